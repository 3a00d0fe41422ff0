"""The vmadm-style CLI end to end: output formats, exit codes, secrets, console log."""

import json

from tests.eventually import eventually
from tests.integration.conftest import write_json


def test_list_formats_filters_and_sorting(cli, guest_spec, vm_name, tmp_path):
    small, big = vm_name("small"), vm_name("big")
    cli("create", "-f", str(write_json(tmp_path / "a.json", guest_spec(small, memory="128MiB"))))
    cli("create", "-f", str(write_json(tmp_path / "b.json", guest_spec(big, memory="384MiB"))))

    table = cli("list")
    assert table.returncode == 0
    header, *lines = [line for line in table.stdout.splitlines() if line.strip() and not line.startswith("─")]
    assert header.split() == ["NAME", "UUID", "KIND", "DRIVER", "STATE", "VCPUS", "MEMORY"]
    assert any(line.split()[0] == small and line.split()[4] == "stopped" for line in lines)

    parsable = cli("list", "-p", "-o", "name,memory", "-s", "-memory")
    assert parsable.stdout.splitlines() == [f"{big}:384MiB", f"{small}:128MiB"]

    no_header = cli("list", "-H", "-o", "name", f"name={small}")
    assert no_header.stdout.split() == [small]

    as_json = json.loads(cli("list", "--json", "-o", "name,state").stdout)
    assert {"name": big, "state": "stopped"} in as_json

    assert cli("list", "-o", "nonsense").returncode == 2
    assert cli("delete", small).returncode == 0
    assert cli("delete", big).returncode == 0


def test_get_has_top_level_state_and_never_shows_the_password(cli, guest_spec, vm_name, tmp_path, config):
    name = vm_name("secret")
    spec = guest_spec(name, graphics={"type": "vnc", "password": "hunter2"})
    created = cli("create", "-f", str(write_json(tmp_path / "s.json", spec)), "--json")
    assert created.returncode == 0, created.stderr
    for output in (created.stdout, cli("get", name).stdout, cli("list", "--json").stdout, cli("info", name).stdout):
        assert "hunter2" not in output
    view = json.loads(cli("get", name).stdout)
    assert view["state"] == "stopped"
    assert view["graphics"]["password"] == "********"
    by_uuid = json.loads(cli("get", view["uuid"]).stdout)
    assert by_uuid["name"] == name
    assert oct(config.db_path.stat().st_mode & 0o777) == "0o600"

    patch = {**view, "description": "edited from get output"}
    assert cli("update", name, "-f", str(write_json(tmp_path / "p.json", patch))).returncode == 0
    assert json.loads(cli("get", name).stdout)["description"] == "edited from get output"
    assert cli("delete", name).returncode == 0


def test_lifecycle_commands_and_console_log(cli, guest_spec, vm_name, tmp_path):
    name = vm_name("clilife")
    assert cli("create", "-f", str(write_json(tmp_path / "s.json", guest_spec(name))), "--start").returncode == 0
    eventually(lambda: "VMHOST-GUEST-READY" in cli("console", name, "--log").stdout, 90, 0.5, "the guest's READY line")
    assert json.loads(cli("info", name).stdout)["runtime"]["pid"] > 0
    stopped = cli("stop", name, "-t", "30")
    assert stopped.returncode == 0
    assert "shut down" in stopped.stdout
    assert "already stopped" in cli("stop", name).stdout
    assert cli("start", name).returncode == 0
    assert cli("reboot", name, "-F").returncode == 0
    assert cli("kill", name).returncode == 0
    assert cli("delete", name).returncode == 0


def test_errors_are_one_readable_line_with_exit_code_one(cli):
    result = cli("start", "no-such-vm")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no VM named no-such-vm"
    assert "Traceback" not in result.stderr


def test_schema_is_json_schema_of_the_spec(cli):
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "VMSpec"
    assert {"name", "memory", "disks", "nics"} <= set(schema["properties"])

"""What a new operator meets in the first hour (issue 19's defects): the agent agrees with local mode, metrics
cover this agent's VMs only, and a console session ends without a traceback."""

import logging
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.eventually import eventually
from tests.integration.conftest import REPO, read_console_until, wait_for_console, wait_for_count, write_json
from vmhost.client import AgentClient
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine


@pytest.fixture
def foreign_engine(config: HostConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Another agent's engine on the same libvirtd: its own data dir, so its VMs are not ours."""
    data_dir = tmp_path_factory.mktemp("vmhost-foreign")
    data_dir.chmod(0o711)
    other = replace(config, data_dir=data_dir, allowed_paths=(*config.path_roots, data_dir))
    engine = Engine(other, build_drivers(other))
    yield engine
    for record in engine.store.list_vms():
        engine.delete(record.name)
    engine.store.close()


def _metric_vms(text: str, family: str) -> set[str]:
    return {line.split('vm="', 1)[1].split('"', 1)[0] for line in text.splitlines() if line.startswith(family + "{")}


def test_metrics_cover_only_this_agents_running_vms(http, engine, foreign_engine, guest_spec, vm_name):
    ours, stopped, theirs = vm_name("metrics-ours"), vm_name("metrics-stopped"), vm_name("metrics-theirs")
    engine.create(guest_spec(ours), start=True)
    engine.create(guest_spec(stopped), start=False)
    foreign_engine.create(guest_spec(theirs), start=True)
    text = http.get("/metrics").text
    cpu = _metric_vms(text, "vmhost_vm_cpu_seconds_total")
    assert ours in cpu
    assert theirs not in cpu and theirs not in text, "another data dir's VM must not be reported"
    assert stopped not in cpu, "a stopped VM has no CPU counter"
    assert stopped in _metric_vms(text, "vmhost_vm_state")


def _agent_cli(agent, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VMHOST_CONFIG"}
    command = [str(REPO / ".venv" / "bin" / "vmhost"), "--agent", agent.url, "--token", agent.token, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_console_of_a_stopped_vm_through_the_agent_fails_as_locally(agent, engine, guest_spec, vm_name, cli):
    name = vm_name("console-stopped")
    engine.create(guest_spec(name), start=False)
    local = cli("console", name)
    remote = _agent_cli(agent, "console", name)
    assert local.returncode == remote.returncode == 1, (local, remote)
    assert f"{name} is not running" in local.stderr
    assert f"{name} is not running" in remote.stderr
    assert "connected" not in remote.stderr


def test_a_console_session_ends_without_a_traceback_and_is_logged(agent, engine, guest_spec, vm_name, caplog):
    name = vm_name("console-session")
    engine.create(guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    caplog.set_level(logging.INFO)
    console = AgentClient(agent.url, agent.token).open_console(name)
    console.write(b"\recho first-hour-$((6*7))\r")
    assert b"first-hour-42" in read_console_until(console, b"first-hour-42", timeout=30)
    console.close()  # what Ctrl-] does
    eventually(lambda: any(r.getMessage() == "console closed" for r in caplog.records), 10, 0.1, "the close record")
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]
    opened = next(r for r in caplog.records if r.getMessage() == "console opened")
    closed = next(r for r in caplog.records if r.getMessage() == "console closed")
    assert opened.__dict__["vm"] == closed.__dict__["vm"] == name
    assert closed.__dict__["principal"] and closed.__dict__["seconds"] >= 0


def test_messages_say_what_happened_not_what_was_asked(cli, engine, guest_spec, vm_name, tmp_path):
    name = vm_name("messages")
    engine.create(guest_spec(name), start=False)
    assert cli("start", name).stdout.strip() == f"started {name}"
    again = cli("start", name)
    assert again.stdout.strip() == f"{name} is already running", (again.stdout, again.stderr)
    assert cli("pause", name).stdout.strip() == f"paused {name}"
    assert cli("pause", name).stdout.strip() == f"{name} is already paused"
    assert cli("resume", name).stdout.strip() == f"resumed {name}"
    assert cli("reboot", "-F", name).stdout.strip() == f"reset {name}"
    refused = cli("delete", name)
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        f"error: {name} is running: stop it first, or pass --force to delete it anyway",
    )
    assert cli("kill", name).stdout.strip() == f"killed {name}"
    killed = cli("kill", name)
    assert (killed.returncode, killed.stdout.strip()) == (0, f"{name} was not running")
    engine.start(name)
    assert cli("delete", "--force", name).stdout.strip() == f"deleted {name}"


def test_listing_an_unknown_state_is_a_usage_error(cli):
    result = cli("list", "state=bogus")
    assert result.returncode == 2
    assert "unknown state 'bogus'; states are provisioning, stopped" in result.stderr


def _three_problem_spec(guest_spec, name: str, data_dir: Path) -> dict[str, object]:
    """README's example: a cross-field problem and two host problems."""
    return guest_spec(
        name,
        cpu={"vcpus": 2, "topology": {"sockets": 1, "cores": 3, "threads": 1}},
        disks=[{"source": {"type": "file", "path": str(data_dir / "missing.img")}}],
        nics=[{"type": "bridge", "source": "vmhbr-missing"}],
    )


def test_validate_and_create_report_every_problem_at_once_and_agree(cli, agent, guest_spec, vm_name, config, tmp_path):
    spec = write_json(tmp_path / "bad.json", _three_problem_spec(guest_spec, vm_name("three"), config.data_dir))
    expected = ("cpu.topology: sockets*cores*threads", "disks.0.source.path: ", "nics.0.source: ")
    for result in (
        cli("validate", "-f", str(spec)),
        cli("create", "-f", str(spec)),
        _agent_cli(agent, "validate", "-f", str(spec)),
    ):
        assert result.returncode == 2, result
        assert "invalid spec (3 problems)" in result.stderr
        for problem in expected:
            assert f"  {problem}" in result.stderr, result.stderr


def test_a_schema_error_hides_no_cross_field_or_host_problem(cli, guest_spec, vm_name, config, tmp_path):
    bad = _three_problem_spec(guest_spec, vm_name("five"), config.data_dir)
    bad |= {"memory": "lots", "nics": [{"type": "bridge", "source": "vmhbr-missing", "mac": "zz"}]}
    result = cli("validate", "-f", str(write_json(tmp_path / "bad.json", bad)))
    assert result.returncode == 2 and "invalid spec (5 problems)" in result.stderr, result.stderr
    for path in ("memory.size", "cpu.topology", "disks.0.source.path", "nics.0.mac", "nics.0.source"):
        assert f"  {path}: " in result.stderr, result.stderr


def test_validate_offline_skips_only_the_host_checks(cli, guest_spec, vm_name, tmp_path):
    spec = guest_spec(vm_name("offline"), nics=[{"type": "bridge", "source": "vmhbr-missing"}])
    path = write_json(tmp_path / "spec.json", spec)
    assert cli("validate", "-f", str(path)).returncode == 2
    offline = cli("validate", "--offline", "-f", str(path))
    assert (offline.returncode, offline.stdout.strip()) == (0, f"valid spec for {spec['name']} (host checks skipped)")


def test_api_create_refuses_host_problems_at_once_and_takes_yaml(http, guest_spec, vm_name, config):
    bad = _three_problem_spec(guest_spec, vm_name("api-three"), config.data_dir)
    refused = http.post("/v1/vms", json=bad)
    assert refused.status_code == 422, refused.text
    assert {d["path"] for d in refused.json()["details"]} == {"cpu.topology", "disks.0.source.path", "nics.0.source"}
    good = guest_spec(vm_name("yaml"))
    created = http.post(
        "/v1/vms", params={"wait": "true"}, content=yaml.safe_dump(good), headers={"content-type": "application/yaml"}
    )
    assert created.status_code == 200, created.text
    assert http.get(f"/v1/vms/{good['name']}").json()["state"] == "stopped"
    http.delete(f"/v1/vms/{good['name']}", params={"wait": "true"})


def test_history_of_a_recreated_name_starts_afresh(engine, guest_spec, vm_name):
    name = vm_name("recreated")
    engine.create(guest_spec(name), start=False)
    engine.update(name, {"description": "the first one"})
    engine.delete(name)
    engine.create(guest_spec(name), start=False)
    assert [op["kind"] for op in engine.info(name)["operations"]] == ["create"]


def test_console_log_marks_each_boot_and_tails(cli, engine, guest_spec, vm_name):
    name = vm_name("boots")
    engine.create(guest_spec(name), start=True)
    wait_for_console(engine, name, "vmhost-guest# ")
    engine.kill(name)
    engine.start(name)
    wait_for_count(engine, name, "vmhost-guest# ", 2)  # each boot prints its prompt last: the log is now still
    log = cli("console", name, "--log").stdout
    assert log.count(f"--- vmhost: boot of {name} at ") == 2
    assert log.index(f"boot of {name}") < log.index("VMHOST-GUEST-READY")
    assert "\x1b" not in log and "\r" not in log
    tail = cli("console", name, "--log", "--tail", "2").stdout
    assert len(tail.splitlines()) == 2 and tail in log


@pytest.fixture
def dhcp_network(libvirt_conn) -> Iterator[str]:
    """An isolated libvirt network with DHCP (nothing is forwarded off it): the lease source of guest addresses."""
    suffix = secrets.token_hex(3)
    name = f"vmhnet{suffix}"
    network = libvirt_conn.networkCreateXML(
        f"<network><name>{name}</name><bridge name='vmhnb{suffix}'/>"
        "<ip address='10.213.8.1' netmask='255.255.255.0'><dhcp><range start='10.213.8.50' end='10.213.8.99'/>"
        "</dhcp></ip></network>"
    )
    yield name
    network.destroy()


def test_get_and_list_show_each_nics_tap_and_the_guests_addresses(cli, engine, guest_spec, vm_name, dhcp_network):
    name = vm_name("addresses")
    engine.create(guest_spec(name, nics=[{"type": "network", "source": dhcp_network}]), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    runtime = engine.get(name)["runtime"]
    assert runtime["accel"] == "tcg"
    nic = runtime["nics"][0]
    assert nic["device"].startswith("vnet") and nic["addresses"] == []
    console = engine.open_console(name)
    try:
        console.write(b"\rip link set eth0 up; udhcpc -i eth0 -n -q -s /bin/true && echo LEASED-$((1+1))\r")
        read_console_until(console, b"LEASED-2", timeout=60)
    finally:
        console.close()
    eventually(lambda: engine.get(name)["runtime"]["nics"][0]["addresses"], 30, 0.5, "the guest's leased address")
    nic = engine.get(name)["runtime"]["nics"][0]
    assert nic["address_source"] == "lease"
    assert nic["addresses"][0].startswith("10.213.8.") and nic["addresses"][0].endswith("/24")
    assert engine.info(name)["nics"] == [nic]
    listed = cli("list", "-p", "-o", "name,ip", f"name={name}").stdout.strip()
    assert listed == f"{name}:{nic['addresses'][0].split('/')[0]}"


def test_disk_attach_and_detach_verbs_locally_and_through_the_agent(cli, agent, engine, guest_spec, vm_name, tmp_path):
    name = vm_name("diskverbs")
    engine.create(guest_spec(name), start=False)
    disk = write_json(tmp_path / "disk.json", {"source": {"type": "new", "size": "8MiB"}})
    attached = cli("disk", "attach", name, "-f", str(disk))
    assert (attached.returncode, attached.stdout.strip()) == (0, f"attached vda to {name}"), attached.stderr
    remote = _agent_cli(agent, "disk", "attach", name, "-f", str(disk))
    assert (remote.returncode, remote.stdout.strip()) == (0, f"attached vdb to {name}"), remote.stderr
    assert [d["target"] for d in engine.get(name)["disks"]] == ["vda", "vdb"]
    assert _agent_cli(agent, "disk", "detach", name, "vdb").stdout.strip() == f"detached vdb from {name}"
    assert cli("disk", "detach", name, "vda").returncode == 0
    assert engine.get(name)["disks"] == []
    bad = cli("disk", "attach", name, "-f", str(write_json(tmp_path / "bad.json", ["not", "a", "disk"])))
    assert bad.returncode == 2

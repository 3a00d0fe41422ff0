"""The CLI conveniences a new operator reaches for first: --version, explain, clear words for a bad agent URL or a
missing agent, and where `serve` listens."""

import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from vmhost.api.server import Listen, listening_facts
from vmhost.cli.console import last_lines, plain_text
from vmhost.cli.main import app, hoist_global_options
from vmhost.cli.output import human_time, with_iso_times
from vmhost.config import HostConfig
from vmhost.engine.logs import mark_boot
from vmhost.engine.states import VmState
from vmhost.engine.views import summary
from vmhost.spec.reference import UnknownField, explain
from vmhost.spec.units import format_size, parse_size


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_version_prints_the_package_version():
    result = invoke("--version")
    assert (result.exit_code, result.stdout.strip()) == (0, f"vmhost {version('vmhost')}")


def test_an_agent_url_without_a_scheme_is_a_usage_error_that_says_how_to_write_it():
    result = invoke("--agent", "10.0.0.5:7070", "--token", "t", "list")
    assert result.exit_code == 2
    assert "agent URL '10.0.0.5:7070' has no scheme: use http://10.0.0.5:7070" in result.stderr


def test_events_without_an_agent_says_there_is_none_to_follow(tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nlisten_port = {closed_port}\n')
    result = invoke("--token", "t", "events", env={"VMHOST_CONFIG": str(config)})
    assert result.exit_code == 1
    assert f"no agent answers at http://127.0.0.1:{closed_port}, so there are no events to follow" in result.stderr
    assert "lost the event stream" not in result.stderr


def test_explain_prints_a_blocks_fields_types_defaults_and_an_example():
    result = invoke("explain", "nics")
    assert result.exit_code == 0
    text = result.stdout
    assert "FIELD:   nics" in text and "\nNic: " in text
    assert "model" in text and "virtio | e1000 | rtl8139 (default virtio)" in text
    assert "Example:" in text and "source: br0" in text


def test_explain_walks_into_unions_and_nested_blocks():
    text = explain("disks.source")
    assert "NewDisk:" in text and "FileDisk:" in text
    assert "CpuTopology:" in explain("cpu.topology")


def test_explain_of_an_unknown_field_names_the_known_ones():
    with pytest.raises(UnknownField, match=r"nics has no field .colour.; fields: .*bandwidth"):
        explain("nics.colour")
    assert invoke("explain", "colour").exit_code == 2


def test_serve_says_where_it_listens_and_where_the_token_is_never_the_token(tmp_path: Path):
    config = HostConfig(data_dir=tmp_path)
    plain = listening_facts(config, Listen("127.0.0.1", 7070), [])
    assert plain == {
        "url": "http://127.0.0.1:7070",
        "tls": False,
        "token_file": str(tmp_path / "api-token"),
        "plugin_ports": [],
    }
    tls = listening_facts(config, Listen("::1", 7443, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem"), [7071])
    assert (tls["url"], tls["tls"], tls["plugin_ports"]) == ("https://[::1]:7443", True, [7071])


def test_global_options_may_follow_the_command_as_virsh_and_incus_accept():
    assert hoist_global_options(["list", "--agent", "http://h:7070", "-o", "name"]) == [
        "--agent",
        "http://h:7070",
        "list",
        "-o",
        "name",
    ]
    assert hoist_global_options(["get", "web", "-c", "/etc/x.toml", "--token=t"]) == [
        "-c",
        "/etc/x.toml",
        "--token=t",
        "get",
        "web",
    ]
    assert hoist_global_options(["--agent", "http://h", "list"]) == ["--agent", "http://h", "list"]
    assert hoist_global_options(["console", "web", "--", "--agent", "x"]) == ["console", "web", "--", "--agent", "x"]


def test_the_installed_command_takes_global_options_after_the_command(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    result = subprocess.run(
        [str(Path(sys.executable).parent / "vmhost"), "list", "--agent", "h:1", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "agent URL 'h:1' has no scheme" in result.stderr


def test_console_log_output_leaves_terminal_control_sequences_out():
    raw = b"\x1b[0;32mOK\x1b[0m booted\r\n\x1b]0;a title\x07prompt\x1b[2K# \tls\r\n"
    assert plain_text(raw) == b"OK booted\nprompt# \tls\n"
    assert last_lines(b"one\ntwo\nthree\n", 2) == b"two\nthree\n"


def test_each_boot_is_marked_in_the_console_log(tmp_path: Path):
    log = tmp_path / "console.log"
    log.write_bytes(b"old boot output")
    mark_boot(log, "web")
    mark_boot(tmp_path / "missing-dir" / "console.log", "web")
    lines = log.read_text().splitlines()
    assert lines[0] == "old boot output"
    assert lines[1].startswith("--- vmhost: boot of web at 20") and lines[1].endswith("Z ---")
    assert not (tmp_path / "missing-dir").exists()


def test_tail_needs_log_and_no_follow():
    result = invoke("console", "web", "--tail", "3")
    assert result.exit_code == 2
    assert "--tail goes with --log, without --follow" in result.stderr


def _record(driver: str, **spec: object) -> SimpleNamespace:
    base = {"cpu": {"vcpus": 1}, "memory": {"size": "64MiB"}, "disks": [], "nics": []}
    return SimpleNamespace(name="web", uuid="u", driver=driver, spec={**base, **spec})


def test_the_accel_column_shows_what_runs_the_vm_not_an_empty_default():
    assert summary(_record("libvirt"), VmState.RUNNING, "kvm")["accel"] == "kvm"  # type: ignore[arg-type]
    assert summary(_record("libvirt", accel="tcg"), VmState.RUNNING, "kvm")["accel"] == "tcg"  # type: ignore[arg-type]
    assert summary(_record("runc", kind="container"), VmState.RUNNING, "kvm")["accel"] == ""  # type: ignore[arg-type]


def test_json_output_carries_iso_times_and_tables_human_ones():
    document = {"created_at": 1764642600.25, "operations": [{"started_at": 0, "kind": "x"}], "time": 1764642600}
    assert with_iso_times(document) == {
        "created_at": "2025-12-02T02:30:00Z",
        "operations": [{"started_at": "1970-01-01T00:00:00Z", "kind": "x"}],
        "time": "2025-12-02T02:30:00Z",
    }
    assert with_iso_times({"restart_at": None, "flag_at": True}) == {"restart_at": None, "flag_at": True}
    now = 1764642600.0
    assert [human_time(now - age, now) for age in (5, 300, 7200)] == ["5s ago", "5 min ago", "2 h ago"]
    assert human_time(now - 3 * 86400, now) == "2025-11-29 02:30:00Z"
    assert human_time(None) == "-"


def test_sizes_read_as_documented_bare_units_binary_decimal_units_decimal():
    assert parse_size("256M") == parse_size("256MiB") == parse_size("256mib") == 256 * 2**20
    assert parse_size("1GB") == 10**9 and parse_size("1G") == 2**30
    assert format_size(10**9) == "1000000000" and format_size(2**30) == "1GiB"


def test_a_spec_can_come_from_standard_input():
    result = CliRunner().invoke(app, ["validate", "--offline", "-f", "-"], input="name: piped\nmemory: 64MiB\n")
    assert (result.exit_code, result.stdout.strip()) == (0, "valid spec for piped (host checks skipped)")


def test_shell_completion_is_offered_for_bash():
    vmhost = Path(sys.executable).parent / "vmhost"
    result = subprocess.run(  # typer finds the shell among its ancestors, as when a user types it into bash
        ["bash", "-c", f"{vmhost} --show-completion; exit $?"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "_vmhost_completion()" in result.stdout and "complete " in result.stdout

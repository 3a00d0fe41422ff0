"""`vmhost migrate` and `vmhost evacuate` as an operator types them: through a real agent (uvicorn on loopback,
the engine's migration facade stood in for) and in local mode, with the same output; one-line errors naming
the problem (exit 1), bad flags naming the flag (exit 2), a per-VM table for evacuate (exit 1 if one stayed)."""

import json
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from typer.testing import CliRunner

from tests.eventually import eventually
from tests.integration.running_agent import free_port
from tests.unit.test_api_migration import DEST, Facade, config, engine, facade
from vmhost.api.agent import Agent
from vmhost.api.app import create_app
from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operations
from vmhost.cli import main as cli
from vmhost.cli.migration import progress_fields
from vmhost.engine import Engine
from vmhost.engine.peer import MigrationRequest
from vmhost.host.tokens import read_token

FIXTURES = (config, engine, facade)
"""From test_api_migration: the engine on the fake hypervisor with its migration facade stood in for."""


@pytest.fixture
def agent_url(engine: Engine, facade: Facade) -> Iterator[str]:
    """The agent's app on that engine, served by uvicorn on loopback (plain HTTP: loopback only)."""
    from tests.fakes.engines import NoEvents
    from vmhost.host.tokens import ensure_token

    config = engine.config
    ensure_token(config.data_dir)
    agent = Agent(config, engine, Operations(journal=engine), TokenAuth(config.data_dir, ()), NoEvents())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(agent), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 10, 0.05, "the agent's start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def run_cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.app, list(args), env=env)


def through(agent_url: str, engine: Engine, *args: str):
    return run_cli("--agent", agent_url, "--token", str(read_token(engine.config.data_dir)), *args)


def test_migrate_through_an_agent_says_where_the_vm_went(agent_url, engine, facade):
    result = through(
        agent_url, engine, "migrate", "web", "--to", DEST, "--copy-storage", "--bandwidth", "200",
        "--timeout", "90", "--stall-timeout", "15", "--auto-converge", "--post-copy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"migrated web to {DEST} (") and result.stdout.rstrip().endswith("s)")
    request = MigrationRequest(
        copy_storage=True, bandwidth_mib=200, timeout=90, stall_timeout=15, auto_converge=True, post_copy=True
    )
    assert facade.calls == [("migrate", "web", DEST, request)]


def test_migrate_offline_and_json(agent_url, engine, facade):
    result = through(agent_url, engine, "migrate", "web", "--to", DEST, "--offline", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "web", "to": DEST}
    assert facade.calls[0][3] == MigrationRequest(offline=True)


def test_a_destination_this_host_has_no_token_for_is_one_line_exit_1(agent_url, engine, facade):
    result = through(agent_url, engine, "migrate", "web", "--to", "https://elsewhere.test:7070")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("error: no token for the agent at https://elsewhere.test:7070")
    assert facade.calls == []


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--to", DEST, "--bandwidth", "0"], "error: --bandwidth: input should be greater than 0"),
        (["--to", DEST, "--timeout", "-5"], "error: --timeout: input should be greater than 0"),
        (["--to", "dest.test:7070"], "error: --to: 'dest.test:7070' is not an agent URL"),
        (["--to", "http://192.0.2.7:7070"], "error: --to: http://192.0.2.7:7070: migrations send the VM's spec"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(flags, said):
    result = run_cli("--agent", "http://127.0.0.1:9", "--token", "t", "migrate", "web", *flags)
    assert result.exit_code == 2
    assert result.stderr.startswith(said)


def test_evacuate_prints_each_vm_and_exits_1_when_one_stayed(agent_url, engine, facade, config):
    second = "https://dest2.test:7070"
    config.peer_token_files[second] = config.peer_token_files[DEST]
    result = through(agent_url, engine, "evacuate", "--to", f"{DEST},{second}", "--concurrency", "4")
    assert result.exit_code == 1
    lines = [line.split() for line in result.stdout.splitlines() if line.strip() and not line.startswith("─")]
    assert lines[0] == ["VM", "TO", "RESULT"]
    assert lines[1][:2] == ["db", second] and " ".join(lines[1][2:]) == "db is paused by its guest"
    assert lines[-2] == ["web", DEST, "migrated"]
    assert " ".join(lines[-1]) == "migrated 1 of 2 VMs, 1 stayed"
    assert facade.calls == [("evacuate", [DEST, second], MigrationRequest(), 4)]


def test_evacuate_json_is_the_operations_result(agent_url, engine, facade, config):
    config.peer_token_files["https://dest2.test:7070"] = config.peer_token_files[DEST]
    result = through(agent_url, engine, "evacuate", "--to", f"{DEST},https://dest2.test:7070", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert (body["migrated"], body["failed"]) == (1, 1)
    assert [vm["vm"] for vm in body["vms"]] == ["db", "web"]


def test_local_mode_migrates_with_the_same_output(engine, facade, config, tmp_path, monkeypatch):
    """No agent: the engine in this process, built as the CLI builds it (here: the fake one)."""
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'data_dir = "{config.data_dir}"\n[peer_token_files]\n"{DEST}" = "{config.peer_token_files[DEST]}"\n'
    )
    built: dict[str, object] = {}

    def build_engine(*_args: object, peers: object = None, **_kwargs: object) -> Engine:
        built["peers"] = peers
        return engine

    monkeypatch.setattr(cli, "build_engine", build_engine)
    result = run_cli("migrate", "web", "--to", DEST, env={"VMHOST_CONFIG": str(config_file), "VMHOST_AGENT": ""})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"migrated web to {DEST} (")
    assert facade.calls == [("migrate", "web", DEST, MigrationRequest())]
    assert callable(built["peers"]), "local mode hands the engine its client of other agents"
    refused = run_cli(
        "migrate",
        "web",
        "--to",
        "https://unknown.test:7070",
        env={"VMHOST_CONFIG": str(config_file), "VMHOST_AGENT": ""},
    )
    assert refused.exit_code == 1 and "no token for the agent at https://unknown.test:7070" in refused.stderr


def test_the_bar_follows_the_phase_lines_and_names_the_other_steps():
    assert progress_fields("web", "phase memory 42% remaining 12 MiB downtime 30 ms") == {
        "description": "web: memory",
        "completed": 42.0,
        "detail": "12 MiB left, downtime 30 ms",
    }
    assert progress_fields("web", "phase disks 7% remaining 900 MiB")["detail"] == "900 MiB left"
    assert progress_fields("web", "preparing https://dest.test:7070") == {
        "description": "web: preparing https://dest.test:7070"
    }


def test_local_mode_hands_the_engines_migration_events_to_the_bar(engine, facade, config, monkeypatch):
    """Only this VM's lines for migrate; every VM's, prefixed with its name, for evacuate."""
    from vmhost.cli.backend import LocalBackend
    from vmhost.engine.evacuate import Evacuated
    from vmhost.engine.events import VmEvent

    def publish() -> None:
        engine.events.publish(VmEvent(vm="web", uuid="u", type="migration", state="", reason="phase memory 5%"))
        engine.events.publish(VmEvent(vm="db", uuid="u", type="migrated", state="", reason=f"migrated to {DEST}"))

    def migrate(name: str, to: str, request: MigrationRequest) -> None:
        publish()

    def evacuate(to: list[str], request: MigrationRequest, concurrency: int | None) -> list[Evacuated]:
        publish()
        return [Evacuated("web", to[0], ok=True)]

    monkeypatch.setattr(engine, "migrate", migrate)
    monkeypatch.setattr(engine, "evacuate", evacuate)
    lines: list[str] = []
    LocalBackend(engine).migrate("web", {"to": DEST}, lines.append)
    assert lines == ["phase memory 5%"]
    lines.clear()
    result = LocalBackend(engine).evacuate({"to": [DEST], "concurrency": None}, lines.append)
    assert lines == ["web: phase memory 5%", f"db: migrated to {DEST}"]
    assert result == {"vms": [{"vm": "web", "to": DEST, "ok": True, "error": None}], "migrated": 1, "failed": 0}

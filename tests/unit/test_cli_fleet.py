"""`vmhost fleet` as an operator types it: through a real agent (uvicorn on loopback, as test_cli_migration serves
one) whose fleet control is stood in for, so what the CLI sends and prints is checked against the agent's own
routes and error bodies; etcd is not needed."""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from typer.testing import CliRunner

from tests.eventually import eventually
from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import NoEvents, engine_on, spec
from tests.integration.running_agent import free_port
from vmhost.api.agent import Agent
from vmhost.api.app import create_app
from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operations
from vmhost.cli import main as cli
from vmhost.errors import NotFound
from vmhost.fleet.control import Applied
from vmhost.host.tokens import ensure_token, read_token

GiB = 2**30


def vm(name: str, host: str, **changes: Any) -> dict[str, Any]:
    """A row of GET /v1/fleet/vms."""
    row = {
        "name": name,
        "host": host,
        "host_alive": True,
        "desired_state": "running",
        "generation": 2,
        "observed_generation": 2,
        "state": "running",
        "reason": "",
        "error": "",
        "migrate_to": None,
    }
    return {**row, **changes}


def host(name: str, **changes: Any) -> dict[str, Any]:
    """A row of GET /v1/fleet/hosts."""
    row = {
        "name": name,
        "alive": True,
        "schedulable": True,
        "url": f"https://{name}.test:7070",
        "labels": {"zone": "a"},
        "vcpus": 16,
        "memory": 16 * GiB,
        "free_memory": 12 * GiB,
        "load": {"vms": 1, "vcpus": 2, "memory": 3 * GiB // 2},
        "drivers": ["fake"],
    }
    return {**row, **changes}


@dataclass
class StandIn:
    """The agent's fleet control (vmhost/fleet/control.py Fleet): each call recorded, each answer set by the test."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    changed: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)
    host_rows: list[dict[str, Any]] = field(default_factory=list)
    drained: dict[str, Any] = field(default_factory=dict)

    def apply(self, document: dict[str, Any], host: str | None, state: str, placement: object) -> Applied:
        self.calls.append(("apply", document, host, state))
        return Applied(vm=document["name"], host=host or "host1", generation=3, changed=self.changed)

    def vms(self) -> list[dict[str, Any]]:
        return self.rows

    def vm(self, name: str) -> dict[str, Any]:
        for row in self.rows:
            if row["name"] == name:
                return {**row, "spec": spec(name)}
        raise NotFound(f"the fleet has no VM named {name}")

    def delete(self, name: str) -> dict[str, Any]:
        self.calls.append(("delete", name))
        return {"vm": name, "host": "host1"}

    def hosts(self) -> list[dict[str, Any]]:
        return self.host_rows

    def drain(self, host: str, wait: float | None) -> dict[str, Any]:
        self.calls.append(("drain", host, wait is not None))
        return {"host": host, **self.drained}

    def uncordon(self, host: str) -> dict[str, Any]:
        self.calls.append(("uncordon", host))
        return {"host": host, "schedulable": True}


@dataclass
class Served:
    agent: Agent
    url: str
    token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The agent's app on an engine on the fake hypervisor, served by uvicorn on loopback (plain HTTP: loopback)."""
    engine = engine_on(FakeHypervisor(), tmp_path_factory.mktemp("agent"))
    ensure_token(engine.config.data_dir)
    agent = Agent(engine.config, engine, Operations(journal=engine), TokenAuth(engine.config.data_dir, ()), NoEvents())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(agent), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 10, 0.05, "the agent's start")
    yield Served(agent, f"http://127.0.0.1:{port}", str(read_token(engine.config.data_dir)))
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def fleet(served: Served) -> Iterator[StandIn]:
    stand_in = StandIn()
    served.agent.fleet = stand_in  # type: ignore[assignment]
    yield stand_in
    served.agent.fleet = None


def vmhost(served: Served, *args: str):
    return CliRunner().invoke(cli.app, ["--agent", served.url, "--token", served.token, *args])


def table(stdout: str) -> list[list[str]]:
    """The table's rows (its header first) as their cells; the rule under the header left out."""
    return [line.split() for line in stdout.splitlines() if line.strip() and not line.lstrip().startswith("─")]


@pytest.mark.parametrize(
    ("suffix", "flags", "placed", "state"),
    [
        (".yaml", ["--host", "host2", "--stopped"], "host2", "stopped"),
        (".json", [], None, "running"),
    ],
)
def test_apply_sends_the_spec_files_document_with_the_host_and_the_desired_state(
    served, fleet, tmp_path, suffix, flags, placed, state
):
    document = spec("web", cpu={"vcpus": 2})
    file = tmp_path / f"web{suffix}"
    file.write_text(yaml.safe_dump(document) if suffix == ".yaml" else json.dumps(document))
    result = vmhost(served, "fleet", "apply", "-f", str(file), *flags)
    assert result.exit_code == 0, result.output
    assert fleet.calls == [("apply", document, placed, state)]
    assert result.stdout == f"applied web to {placed or 'host1'} (generation 3)\n"


def test_applying_the_same_spec_again_prints_nothing_to_change(served, fleet, tmp_path):
    fleet.changed = False
    file = tmp_path / "web.json"
    file.write_text(json.dumps(spec("web")))
    result = vmhost(served, "fleet", "apply", "-f", str(file))
    assert (result.exit_code, result.stdout) == (0, "nothing to change\n")


def test_a_spec_file_that_holds_no_mapping_is_a_spec_error_and_the_agent_is_not_asked(served, fleet, tmp_path):
    file = tmp_path / "web.yaml"
    file.write_text("- just\n- a list\n")
    result = vmhost(served, "fleet", "apply", "-f", str(file))
    assert result.exit_code == 2
    assert f"{file} holds no spec: a spec is a mapping" in result.stderr
    assert fleet.calls == []


def test_list_shows_each_vm_with_its_generations_and_a_vm_on_a_down_host_as_unknown(served, fleet):
    fleet.rows = [
        vm("db", "host2", host_alive=False, generation=3, observed_generation=2),
        vm("web", "host1", migrate_to="host3", error="disk vda: no such image"),
    ]
    result = vmhost(served, "fleet", "list")
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == [
        ["VM", "HOST", "DESIRED", "STATE", "GEN", "ERROR"],
        ["db", "host2", "running", "unknown", "2/3", "-"],
        ["web", "host1", "->", "host3", "running", "running", "2/2", "disk", "vda:", "no", "such", "image"],
    ]


def test_hosts_shows_what_the_vms_claim_of_each_host_in_human_units(served, fleet):
    down = {"alive": False, "schedulable": False, "labels": {}, "vcpus": None, "memory": None}
    fleet.host_rows = [host("host1"), host("host2", **down, load={"vms": 0, "vcpus": 0, "memory": 512 * 2**20})]
    result = vmhost(served, "fleet", "hosts")
    assert result.exit_code == 0, result.output
    assert table(result.stdout) == [
        ["HOST", "ALIVE", "SCHEDULABLE", "VMS", "VCPUS", "MEMORY", "LABELS"],
        ["host1", "yes", "yes", "1", "2/16", "1.5GiB/16GiB", "zone=a"],
        ["host2", "no", "no", "0", "0/-", "512MiB/-", "-"],
    ]


def test_get_shows_why_a_vm_is_in_its_state_and_its_spec_as_yaml(served, fleet):
    fleet.rows = [vm("web", "host2", host_alive=False, reason="host host2 is down (its lease expired)")]
    result = vmhost(served, "fleet", "get", "web")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "name:       web",
        "host:       host2 (down)",
        "desired:    running",
        "state:      unknown (host host2 is down (its lease expired))",
        "generation: 2/2 (observed/desired)",
        "error:      -",
    ]
    assert lines[6] == "spec:"
    assert yaml.safe_load("\n".join(line.removeprefix("  ") for line in lines[7:])) == spec("web")


@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (["list"], lambda fleet: fleet.rows),
        (["get", "web"], lambda fleet: {**fleet.rows[0], "spec": spec("web")}),
        (["hosts"], lambda fleet: fleet.host_rows),
    ],
)
def test_json_output_is_the_agents_answer(served, fleet, args, answer):
    fleet.rows, fleet.host_rows = [vm("web", "host1")], [host("host1")]
    result = vmhost(served, "fleet", *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer(fleet)


def test_drain_waits_names_each_move_and_exits_0_when_every_vm_moved(served, fleet):
    fleet.drained = {"moves": [{"vm": "web", "to": "host2"}], "unplaced": [], "left": []}
    result = vmhost(served, "fleet", "drain", "host1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "cordoned host1: it takes no new VMs until `vmhost fleet uncordon host1`",
        "web: moved to host2",
    ]
    assert fleet.calls == [("drain", "host1", True)]


def test_drain_exits_1_and_names_the_vm_no_host_can_take_and_the_one_that_did_not_move(served, fleet):
    fleet.drained = {
        "moves": [{"vm": "web", "to": "host2"}, {"vm": "cache", "to": "host3"}],
        "unplaced": [{"vm": "db", "reason": "no host has 8 vCPUs free"}],
        "left": [vm("db", "host1"), vm("web", "host1", error="migration to host2 failed: disk copy stalled")],
    }
    result = vmhost(served, "fleet", "drain", "host1")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        "web: did not move to host2: migration to host2 failed: disk copy stalled",
        "cache: moved to host3",
        "db: no host can take it: no host has 8 vCPUs free",
    ]


def test_drain_no_wait_returns_with_the_moves_under_way_and_still_exits_1_for_an_unplaced_vm(served, fleet):
    fleet.drained = {"moves": [{"vm": "web", "to": "host2"}], "unplaced": [{"vm": "db", "reason": "no room"}]}
    result = vmhost(served, "fleet", "drain", "host1", "--no-wait")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == ["web: moving to host2", "db: no host can take it: no room"]
    assert fleet.calls == [("drain", "host1", False)]


def test_delete_and_uncordon_say_what_they_did(served, fleet):
    deleted = vmhost(served, "fleet", "delete", "web")
    uncordoned = vmhost(served, "fleet", "uncordon", "host1")
    assert (deleted.exit_code, deleted.stdout) == (0, "deleted web from the fleet (it was on host1)\n")
    assert (uncordoned.exit_code, uncordoned.stdout) == (0, "uncordoned host1: it takes new VMs again\n")
    assert fleet.calls == [("delete", "web"), ("uncordon", "host1")]


def test_an_agent_error_reaches_the_user_as_one_line_with_its_message_and_exit_1(served, fleet):
    result = vmhost(served, "fleet", "get", "nope")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "error: the fleet has no VM named nope\n"


def test_an_agent_that_is_not_part_of_a_fleet_says_so(served):
    result = vmhost(served, "fleet", "list")
    assert result.exit_code == 1
    assert result.stderr == "error: this agent is not part of a fleet (no [fleet] in its config)\n"


def test_without_agent_the_fleet_is_asked_of_this_hosts_own_agent(served, fleet, tmp_path: Path):
    fleet.rows = [vm("web", "host1")]
    config = tmp_path / "config.toml"
    data_dir = served.agent.config.data_dir
    config.write_text(f'data_dir = "{data_dir}"\nlisten_port = {served.url.rsplit(":", 1)[1]}\n')
    env = {"VMHOST_CONFIG": str(config), "VMHOST_AGENT": "", "VMHOST_TOKEN": ""}
    result = CliRunner().invoke(cli.app, ["fleet", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == ["web"]


def test_without_agent_and_none_at_this_hosts_address_the_error_says_to_name_one(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nlisten_port = {free_port()}\n')
    env = {"VMHOST_CONFIG": str(config), "VMHOST_AGENT": ""}
    result = CliRunner().invoke(cli.app, ["--token", "t", "fleet", "hosts"], env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith("start one with `vmhost serve` or name one with --agent URL")
    assert result.stderr.startswith("error: no agent answers at http://127.0.0.1:")

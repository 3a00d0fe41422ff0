"""`vmhost host shutdown` as an operator types it, in local mode on the fake hypervisor: a line per VM or the
JSON result, and exit 1 when a VM failed to stop, with `--json` too (as `evacuate --json`)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import engine_on, spec
from vmhost.cli import main as cli
from vmhost.engine import Engine
from vmhost.errors import HypervisorError


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The engine the CLI builds in local mode (no agent): here one on the fake hypervisor, with two VMs up."""
    engine = engine_on(FakeHypervisor(), tmp_path)
    for name, order in (("first", 2), ("second", 1)):
        engine.create(spec(name, startup={"order": order}), start=True)
    monkeypatch.setattr(cli, "build_engine", lambda *_args, **_kwargs: engine)
    return engine


def shutdown(engine: Engine, *flags: str):
    config = engine.config.data_dir / "config.toml"
    config.write_text(f'data_dir = "{engine.config.data_dir}"\n')
    env = {"VMHOST_CONFIG": str(config), "VMHOST_AGENT": ""}
    return CliRunner().invoke(cli.app, ["host", "shutdown", "--timeout", "0.1", *flags], env=env)


def first_will_not_stop(engine: Engine) -> None:
    driver = engine.driver.drivers["fake"]
    for _ in range(3):
        driver.fail_next("destroy", HypervisorError("destroy refused"))
    driver.acpi_works = False
    driver.fail_next("kill_process", HypervisorError("no process"))


@pytest.mark.parametrize("flags", [(), ("--json",)])
def test_all_stopped_is_exit_0(engine, flags):
    result = shutdown(engine, *flags)
    assert result.exit_code == 0, result.output
    assert engine.driver.drivers["fake"].hypervisor.running() == set()


def test_a_vm_that_failed_to_stop_is_exit_1_with_its_line(engine):
    first_will_not_stop(engine)
    result = shutdown(engine)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("group 2: first failed: ")
    assert lines[1] == "group 1: second forced"
    assert lines[-1].startswith("stopped 1 of 2 VMs in ")


def test_json_prints_the_result_then_exits_1_when_a_vm_failed_to_stop(engine):
    first_will_not_stop(engine)
    result = shutdown(engine, "--json")
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    assert (body["stopped"], body["failed"]) == (1, ["first"])
    assert body["groups"][1]["vms"] == {"second": "forced"}

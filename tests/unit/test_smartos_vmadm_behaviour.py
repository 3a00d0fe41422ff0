"""What vmadm really does that the smartos driver once assumed away (issue 21, items 9-11), checked through the
real Engine and VmadmDriver against the stand-in `vmadm`, which follows smartos-live's vmadm.js and VM.js (see
tests/standin_sources.md)."""

import subprocess
from pathlib import Path

import pytest

from tests.smartos_standin import EXECUTABLE, Standin
from tests.unit.test_smartos_driver import UUID, spec, standin
from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.smartos.driver import Listed
from vmhost.engine import Engine
from vmhost.errors import NotFound, Unavailable

__all__ = ["standin"]
MISSING = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture
def driver(standin: Standin) -> VmadmDriver:
    return VmadmDriver(command=str(EXECUTABLE), brand="bhyve", reboot_timeout=5)


@pytest.fixture
def engine(tmp_path: Path, driver: VmadmDriver) -> Engine:
    return Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos"), driver)


def vmadm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True, check=False)


# ---- item 9: bhyve's vmadm reboot halts a slow guest after 10 s -------------------------------------------


def test_a_graceful_reboot_gives_a_slow_guest_the_whole_stop_timeout(engine: Engine, standin: Standin) -> None:
    """The guest needs 1.5 s to power off; vmadm reboot's fixed timeout is made 1 s here (10 s on SmartOS)."""
    engine.create(spec(), start=True)
    standin.control("web", "stop_seconds", 1.5)
    standin.set_global("reboot_stop_timeout", 1)
    engine.reboot("web")
    vm = standin.vm("web")
    assert (vm.get("hard_halts", 0), vm["boot_count"], vm["state"]) == (0, 2, "running")
    assert standin.changes()[2:] == [["stop", UUID, "-t", "5"], ["start", UUID]]


def test_the_standins_bhyve_reboot_halts_a_slow_guest_as_vmadm_does(engine: Engine, standin: Standin) -> None:
    engine.create(spec(), start=True)
    standin.control("web", "stop_seconds", 1.5)
    standin.set_global("reboot_stop_timeout", 0.5)
    done = vmadm("reboot", UUID)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"Successfully completed reboot for VM {UUID}\n")
    assert standin.vm("web")["hard_halts"] == 1


# ---- item 10: only `get` says "No such zone configured" --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["get", MISSING], f"zoneadm: {MISSING}: No such zone configured"),
        (["start", MISSING], "bad statusCode: 404"),
        (["stop", MISSING, "-F"], "bad statusCode: 404"),
        (["stop", MISSING, "-t", "5"], f"VM {MISSING} not found"),
        (["delete", MISSING], f"Failed to delete VM {MISSING}: VM {MISSING} not found"),
        (["reboot", MISSING], "bad statusCode: 404"),
    ],
)
def test_every_way_vmadm_says_it_does_not_know_a_vm_is_not_found(
    driver: VmadmDriver, args: list[str], said: str
) -> None:
    with pytest.raises(NotFound) as missing:
        driver.vmadm.run(*args, what="ghost")
    assert missing.value.detail == said


def test_a_vm_deleted_between_the_lookup_and_stop_F_is_already_stopped(
    driver: VmadmDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "_find", lambda name: Listed(uuid=MISSING, alias=name, state="running"))
    driver.destroy("ghost")


# ---- item 11: where vmadm prints, bhyve's state during a stop, exit 2 --------------------------------------------


def test_vmadm_that_cannot_run_here_is_unavailable_not_a_usage_error(driver: VmadmDriver, standin: Standin) -> None:
    standin.set_global("cannot_run", "this is not the global zone.")
    with pytest.raises(Unavailable, match="vmadm cannot run here") as refused:
        driver.state("web")
    assert refused.value.detail == "FATAL: cannot run because: this is not the global zone."


def test_the_standin_prints_success_lines_on_stderr_as_vmadm_does(engine: Engine) -> None:
    engine.create(spec())
    started = vmadm("start", UUID)
    again = vmadm("start", UUID)
    assert (started.stdout, started.stderr) == ("", f"Successfully started VM {UUID}\n")
    assert (again.returncode, again.stderr) == (0, f"VM {UUID} is already 'running'\n")


def test_a_bhyve_vm_stays_running_during_a_graceful_stop_until_it_is_down(
    engine: Engine, driver: VmadmDriver, standin: Standin
) -> None:
    engine.create(spec(), start=True)
    standin.control("web", "stop_seconds", 4.0)
    driver.request_shutdown("web")
    assert driver.state("web") == DomainState.RUNNING
    result = engine.stop("web", timeout=10)
    assert result.method == "acpi"
    assert driver.state("web") == DomainState.SHUTOFF

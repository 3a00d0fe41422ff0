"""The stop sequence's last resort, as pure engine logic: a driver whose destroy keeps failing.

The real lifecycle (ACPI, deadline, destroy) is tested against libvirt in tests/integration; libvirt cannot be
made to fail a destroy on demand, so this one path is checked with a stand-in driver.
"""

from pathlib import Path

import pytest

from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.engine import Engine, stopping
from vmhost.errors import HypervisorError


class StubbornDriver:
    """Destroy always fails; killing the process works (or not, per test)."""

    kind = "stub"

    def __init__(self, kill_works: bool):
        self.kill_works = kill_works
        self.calls: list[str] = []
        self.running = True

    def destroy(self, name: str) -> None:
        self.calls.append("destroy")
        raise HypervisorError("cannot acquire state change lock")

    def kill_process(self, name: str) -> bool:
        self.calls.append("kill")
        self.running = not self.kill_works
        return True

    def state(self, name: str) -> DomainState:
        return DomainState.RUNNING if self.running else DomainState.SHUTOFF


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(stopping, "FORCED_STOP_WAIT", 0.2)
    monkeypatch.setattr(stopping.time, "sleep", lambda _seconds: None)


def engine_with(driver: StubbornDriver, tmp_path: Path) -> Engine:
    return Engine(HostConfig(data_dir=tmp_path, accel="tcg"), driver)  # type: ignore[arg-type]


def test_stop_kills_the_qemu_process_when_destroy_keeps_failing(tmp_path):
    driver = StubbornDriver(kill_works=True)
    assert stopping.stop_domain(engine_with(driver, tmp_path).core, "vm", force=True, deadline=0) == "killed-process"
    assert driver.calls == ["destroy", "destroy", "destroy", "kill"]


def test_stop_reports_what_it_tried_when_nothing_works(tmp_path):
    driver = StubbornDriver(kill_works=False)
    with pytest.raises(HypervisorError, match="still running after 3 forced stops and a kill") as failure:
        stopping.stop_domain(engine_with(driver, tmp_path).core, "vm", force=True, deadline=0)
    assert failure.value.detail == "cannot acquire state change lock"

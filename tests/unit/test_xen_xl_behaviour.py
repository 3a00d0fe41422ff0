"""What xl really does that the xen driver once assumed away (issue 21, items 2-8), each checked through the
real Engine and XlDriver against the stand-in `xl`, which follows xl's and libxl's source at 4.17 (see
tests/standin_sources.md). Item 1 (all-digit names) is in tests/security/test_xen_digit_names.py."""

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.unit.test_xen_driver import BRIDGE, config_path, driver, engine, read_console_until, sysfs, web
from tests.unit.xen_standin import StandIn
from vmhost.drivers.base import DomainEvent, DomainEventKind
from vmhost.drivers.polling import PollingEventSource
from vmhost.drivers.xen import XlDriver
from vmhost.engine import Engine, stopping
from vmhost.errors import Conflict, HypervisorError
from vmhost.spec.units import MiB

__all__ = ["driver", "engine", "sysfs"]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stopping, "FORCED_STOP_WAIT", 2.0)


def pvh(engine: Engine, **changes: object) -> dict[str, object]:
    """A direct kernel boot with nothing emulated: a PVH domain (no device model, PV control always there)."""
    kernel = engine.config.data_dir / "images" / "vmlinuz"
    kernel.parent.mkdir(parents=True, exist_ok=True)
    kernel.write_bytes(b"stand-in kernel")
    return web(boot={"kernel": {"kernel": str(kernel)}}, **changes)


# ---- item 2: xl shutdown waits 60 s for an acknowledgement and then fails --------------------------------


def test_a_shutdown_the_guest_never_acknowledges_is_forced_at_vmhosts_deadline(
    engine: Engine, standin: StandIn
) -> None:
    """libxl waits 60 s for the acknowledgement; the stop must end at its own 1 s deadline, not after xl's."""
    engine.create(web(), start=True)
    standin.ignore_shutdown("web")
    result = engine.stop("web", timeout=1)
    assert (result.method, result.seconds < 6) == ("forced", True)
    assert "web" not in standin.domains()


def test_a_shutdown_xl_gives_up_on_still_ends_in_the_forced_destroy(engine: Engine, standin: StandIn) -> None:
    """ "shutdown failed (rc=-9)" once libxl's wait runs out is not the end of the stop."""
    engine.create(web(), start=True)
    standin.ignore_shutdown("web")
    standin.set_control("ack_timeout", 0.2)
    result = engine.stop("web", timeout=2)
    assert result.method == "forced"
    assert engine.get("web")["state"] == "stopped"


# ---- item 3: there is no reset trigger on x86 ----------------------------------------------------------


def test_a_forced_reboot_destroys_and_creates_the_domain_again(engine: Engine, standin: StandIn) -> None:
    engine.create(web(), start=True)
    before = standin.domains()["web"]["domid"]
    standin.forget_argvs()
    engine.reboot("web", force=True)
    assert standin.domains()["web"]["domid"] != before
    assert standin.argvs() == [["destroy", "web"], ["create", "-p", config_path(engine)], ["unpause", "web"]]
    eventually(lambda: standin.boots("web") == 2, 15, 0.05)
    assert engine.get("web")["state"] == "running"


def test_a_reboot_xl_cannot_deliver_is_reported_with_xls_words(engine: Engine, standin: StandIn) -> None:
    """HVM without PV drivers: -F falls back to the reset trigger, which x86 Xen lacks: "reboot failed (rc=-3)"."""
    engine.create(web(), start=True)
    standin.add_control("no_pv_drivers", "web")
    with pytest.raises(HypervisorError, match="xl failed to reboot web") as failure:
        engine.reboot("web")
    assert "Send trigger 'reset' failed" in str(failure.value.detail)
    assert str(failure.value.detail).endswith("reboot failed (rc=-3)")


def test_the_standin_ignores_a_reset_trigger_as_xl_does(standin: StandIn, driver: XlDriver, engine: Engine) -> None:
    engine.create(web(), start=True)
    done = subprocess.run([standin.command, "trigger", "web", "reset"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "Send trigger 'reset' failed: Function not implemented" in done.stderr
    assert standin.domains()["web"]["flags"] == "-b----"


# ---- item 4: a guest reboot is destroy, 2 s, create --------------------------------------------------------


def test_a_guest_reboot_is_neither_a_poweroff_nor_a_reason_to_restart(engine: Engine, standin: StandIn) -> None:
    engine.create(web(restart_policy="always"), start=True)
    eventually(lambda: standin.boots("web") == 1, 15, 0.05)
    events: list[DomainEvent] = []
    seen: set[str] = set()

    def sink(event: DomainEvent) -> None:
        events.append(event)
        engine.on_domain_event(event)

    source = PollingEventSource(engine.driver, interval=0.1)
    connected = threading.Event()
    source.start(sink, connected.set, lambda _reason: None)
    try:
        assert connected.wait(5), "the poller took its first snapshot"
        before = standin.domains()["web"]["domid"]
        engine.driver.request_reboot("web")

        def rebooted() -> bool:
            seen.add(engine.get("web")["state"])
            assert standin.boots("web") == 2 and engine.get("web")["state"] == "running", f"events: {events}"
            return True

        eventually(rebooted, 15, 0.05, "the reboot completed")
    finally:
        source.stop()
    assert standin.domains()["web"]["domid"] != before
    assert "stopped" not in seen
    assert DomainEventKind.STOPPED not in [event.kind for event in events]
    assert engine.record("web").restart_count == 0


def test_a_stop_between_the_halves_of_a_guest_reboot_keeps_it_off(engine: Engine, standin: StandIn) -> None:
    """The domain is gone and xl's monitor is about to create it again: the stop must end that monitor."""
    engine.create(web(), start=True)
    engine.driver.request_reboot("web")
    eventually(lambda: "web" not in standin.domains(), 15, 0.05)
    assert engine.stop("web", timeout=0.5).method == "forced"
    time.sleep(3)
    assert "web" not in standin.domains()
    assert engine.get("web")["state"] == "stopped"


# ---- item 5: xl pause/unpause exit 0 whatever happened ------------------------------------------------------


def test_an_unpause_that_did_not_happen_fails_the_start_and_is_rolled_back(engine: Engine, standin: StandIn) -> None:
    engine.create(web())
    standin.set_control("unpause_fails", {"web": "QMP command 'cont' failed"})
    with pytest.raises(HypervisorError, match="could not resume web: it is still paused") as failure:
        engine.start("web")
    assert "QMP command 'cont' failed" in str(failure.value.detail)
    assert "web" not in standin.domains()
    assert engine.get("web")["state"] == "stopped"


# ---- item 6: autoballoon ---------------------------------------------------------------------------------


def test_with_autoballoon_the_memory_dom0_can_give_counts_as_available(engine: Engine, standin: StandIn) -> None:
    """Xen's free_memory is 256 MiB here (dom0 holds the rest); xl create balloons dom0 down to 128 MiB."""
    standin.set_control("autoballoon", True)
    host = engine.driver.host_info()
    assert host.memory_available == (256 + 16128 - 128) * MiB
    engine.create(web(memory="4GiB"), start=True)
    assert engine.get("web")["state"] == "running"


def test_autoballoon_off_in_xl_conf_leaves_only_xens_free_memory(standin: StandIn, sysfs: Path, tmp_path: Path) -> None:
    standin.set_control("autoballoon", True)
    (tmp_path / "xl.conf").write_text('autoballoon="off"\n')
    driver = XlDriver("xl", tmp_path / "data" / "xen", sysfs=sysfs, xl_conf=tmp_path / "xl.conf")
    assert driver.host_info().memory_available == 256 * MiB


# ---- item 7: a create slower than vmhost's bound --------------------------------------------------------------


def test_a_create_that_times_out_leaves_no_half_built_domain(
    engine: Engine, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in's device model takes 3 s; vmhost's bound is made 1 s here, and xl is killed at it."""
    monkeypatch.setattr("vmhost.drivers.xen.xl.COMMAND_TIMEOUT", 1.0)
    monkeypatch.setattr("vmhost.drivers.xen.host.DEVICE_MODEL_SECONDS", 1.0)
    monkeypatch.setattr("vmhost.drivers.xen.host.HOTPLUG_SECONDS", 0.0)
    monkeypatch.setattr("vmhost.drivers.xen.host.CREATE_MARGIN_SECONDS", 0.0)
    engine.create(web())
    standin.set_control("create_delay", 3)
    with pytest.raises(HypervisorError, match="the half-built domain was destroyed"):
        engine.start("web")
    assert "web" not in standin.domains()
    assert engine.get("web")["state"] == "stopped"


def test_the_create_bound_follows_libxls_timeouts() -> None:
    from vmhost.drivers.xen.host import create_timeout

    spec = {"nics": [{}, {}], "disks": [{}]}
    assert create_timeout(spec, hvm=True) == 60 + 40 * 5 + 20
    assert create_timeout(spec, hvm=False) == 60 + 40 * 3 + 20


# ---- item 8: interface names, the console lock, hotplug messages --------------------------------------------


def test_interfaces_are_the_vifname_and_an_hvm_nics_emu_tap(engine: Engine, standin: StandIn) -> None:
    nic = {"type": "bridge", "source": BRIDGE, "mac": "00:16:3e:00:00:01", "tap": "web0"}
    engine.create(web(nics=[nic, {"type": "bridge", "source": BRIDGE, "mac": "00:16:3e:00:00:02"}]), start=True)
    domid = standin.domains()["web"]["domid"]
    assert engine.driver.interfaces("web") == ["web0", "web0-emu", f"vif{domid}.1", f"vif{domid}.1-emu"]


def test_a_pvh_domain_has_only_its_vifs(engine: Engine, standin: StandIn) -> None:
    engine.create(pvh(engine, name="lean", uuid="00000000-0000-4000-8000-0000000000d2"), start=True)
    domid = standin.domains()["lean"]["domid"]
    assert engine.driver.interfaces("lean") == [f"vif{domid}.0"]


def test_a_second_console_client_is_told_the_console_is_busy(engine: Engine) -> None:
    engine.create(web(), start=True)
    first = engine.open_console("web")
    try:
        read_console_until(first, b"stand-in console of web", timeout=15)
        with pytest.raises(Conflict, match="the console of web is busy") as busy:
            engine.open_console("web")
        assert "Could not lock" in str(busy.value.detail)
    finally:
        first.close()


def test_a_hotplug_script_saying_does_not_exist_is_not_a_missing_domain(engine: Engine, standin: StandIn) -> None:
    engine.create(web())
    standin.fail_next(
        "create",
        "libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/block add [912] exited "
        "with error status 1\nlibxl: error: libxl_device.c:1286:device_hotplug_child_death_cb: script: "
        "/srv/disk.img does not exist.",
        rc=3,
    )
    with pytest.raises(HypervisorError, match="xl failed to start web"):
        engine.start("web")


def test_a_pending_shutdown_request_ends_when_the_domain_is_destroyed(
    engine: Engine, standin: StandIn, driver: XlDriver
) -> None:
    engine.create(web(), start=True)
    standin.ignore_shutdown("web")
    driver.request_shutdown("web")
    pending = list(driver._requests.values())
    assert [process.poll() for process in pending] == [None]
    driver.destroy("web")
    assert driver._requests == {}
    assert pending[0].returncode == 0

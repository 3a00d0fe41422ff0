"""Getting a domain off the hypervisor: ACPI, then forced destroys, then SIGKILL; shared by stop, kill, delete
and recovery. Also the idempotent repairs that undo and redo steps share."""

import time
from pathlib import Path

from vmhost.engine import resources
from vmhost.engine.core import GONE, Core, stored
from vmhost.engine.states import OBSERVED, VmState
from vmhost.errors import HypervisorError, NotFound, Unavailable, VmhostError
from vmhost.store.sqlite import VmRecord

POLL_INTERVAL = 0.1
FORCED_STOP_WAIT = 30.0
DESTROY_ATTEMPTS = 3


def wait_gone(core: Core, name: str, seconds: float, what: str) -> bool:
    """Woken by the stop event when an event source runs; checks the hypervisor every 0.1 s regardless."""
    signal = core.timers.gone_signal(name)
    began = time.monotonic()
    end = began + seconds
    while time.monotonic() < end and core.driver.state(name) not in GONE:
        core.progress(f"{what} ({end - time.monotonic():.0f}s left)")
        signal.wait(POLL_INTERVAL)
    gone = core.driver.state(name) in GONE
    waited = time.monotonic() - began
    core.progress(f"{name} is off after {waited:.1f}s" if gone else f"{name} still runs after {waited:.1f}s")
    return gone


def request_shutdown(core: Core, name: str) -> bool:
    """Press the ACPI power button; True if the domain turned out to be gone already."""
    core.timers.gone_signal(name).clear()
    try:
        core.driver.request_shutdown(name)
    except VmhostError:
        if core.driver.state(name) in GONE:
            return True
        raise
    return False


def force_off(core: Core, name: str) -> str:
    """Destroy, retried; if the hypervisor cannot, SIGKILL the process itself. Returns how it went."""
    core.timers.gone_signal(name).clear()
    failure: VmhostError | None = None
    for attempt in range(DESTROY_ATTEMPTS):
        try:
            core.driver.destroy(name)
        except Unavailable:
            raise  # libvirt is away: killing QEMU behind its back would only make things worse
        except VmhostError as exc:
            failure = exc
            time.sleep(0.5 * 2**attempt)
            continue
        if wait_gone(core, name, FORCED_STOP_WAIT, "waiting for the forced stop"):
            return "forced"
    if core.driver.kill_process(name) and wait_gone(core, name, FORCED_STOP_WAIT, "waiting for the killed process"):
        return "killed-process"
    raise HypervisorError(
        f"{name} is still running after {DESTROY_ATTEMPTS} forced stops and a kill",
        (failure.detail or failure.message) if failure else None,
    )


def stop_domain(core: Core, name: str, force: bool, deadline: float) -> str:
    """ACPI first (unless forced), then force; returns acpi, forced or killed-process."""
    if not force and (
        request_shutdown(core, name) or wait_gone(core, name, deadline, "waiting for the guest to power off")
    ):
        return "acpi"
    return force_off(core, name)


def force_off_if_running(core: Core, name: str) -> None:
    if core.driver.state(name) not in GONE:
        force_off(core, name)


def after_stop(core: Core, record: VmRecord) -> None:
    """A stop through vmhost is what the operator wants: no restart policy undoes it. A VM that was off after a
    crash stays recorded as crashed (the hypervisor still says so), as one whose definition vanished as failed."""
    core.timers.cancel(record.name)
    core.release_unmanaged_pci(record)
    observed = OBSERVED[core.driver.state(record.name)]
    off = observed if observed in (VmState.CRASHED, VmState.FAILED) else VmState.STOPPED  # what the hypervisor says
    core.set_state(record.name, off, desired_state="stopped", next_retry_at=None)


def remove_domain_if_its(core: Core, name: str, uuid: str) -> None:
    """Destroy and undefine the domain `name` only if it is the one with this UUID."""
    try:
        info = core.driver.info(name)
    except NotFound:
        return
    if info.uuid != uuid:
        return
    if info.state not in GONE:
        force_off(core, name)
    core.driver.undefine(name)


def define_from_store(core: Core, name: str) -> None:
    """Make the hypervisor's definition say what the store says (the store is the truth after a crash)."""
    record = core.store.get_vm(name)
    if record is None:
        return
    spec = core.spec_of(record)
    plan = resources.plan(spec, core.config)
    if plan.vm_dir.is_dir():
        resources.sync_seed(plan)
    core.driver.define(spec, plan.resources)
    if plan.resolved:  # stored before image formats were recorded: record them now, once
        core.store.update_vm(record.name, spec=stored(spec))


def remove_unrecorded_disks(core: Core, name: str, created: list[Path]) -> None:
    """Images this operation created, and images in a stopped VM's disk directory that its record does not own
    (leftovers of an interrupted change; a running VM may hold a hot-plugged one open, so it keeps them)."""
    record = core.store.get_vm(name)
    owned = set(record.owned_paths) if record else set()
    for path in created:
        if str(path) not in owned:
            path.unlink(missing_ok=True)
    if record is None or core.driver.state(name) not in GONE:
        return
    directory = resources.vm_dir(core.config.data_dir, record.uuid) / "disks"
    for image in directory.glob("*") if directory.is_dir() else []:
        if str(image) not in owned:
            image.unlink()

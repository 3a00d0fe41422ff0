"""ZStack's day-two paths: NIC, CPU/memory, ISO and volume changes on a running VM, with ZStack's reply fields.

Each command is converted (vmhost/dialects/zstack/day_two.py) against the VM's stored spec when its operation runs
(the per-VM exclusivity of Operations) and applied with Engine.update(name, patch, live=True): one path for live
changes, so the plan, the journal, the events and the persistence are those of `vmhost update --live`. A refusal
from the plan names spec paths; it reaches the management node under the ZStack field the conversion recorded.
/volume/resize is the exception (ZStack's volumes have no size in the spec: a block resize, as ZStack's agent does),
and the snapshot paths are refused (docs/zstack-day-two.md says why). Only the dialect's VMs are seen.
"""

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from vmhost.api.zstack.handlers import ALIVE, ZStackHost
from vmhost.api.zstack.tasks import Job, Reply
from vmhost.dialects.zstack import day_two as convert
from vmhost.drivers.base import Capability
from vmhost.engine.events import VmEvent
from vmhost.engine.states import VmState
from vmhost.errors import HypervisorError
from vmhost.spec import Problem, SpecError

Command = Mapping[str, Any]
Conversion = Callable[[Command, Mapping[str, Any]], convert.Change | None]
Answer = Callable[[ZStackHost, str], Reply]


def _no_fields(_host: ZStackHost, _name: str) -> Reply:
    return {}


def _cpu_num(host: ZStackHost, name: str) -> Reply:
    return {"cpuNum": host.engine.spec_of(host.engine.record(name)).cpu.vcpus}


def _memory_size(host: ZStackHost, name: str) -> Reply:
    return {"memorySize": host.engine.spec_of(host.engine.record(name)).memory.size}


def _cpu_and_memory(host: ZStackHost, name: str) -> Reply:
    return {**_cpu_num(host, name), **_memory_size(host, name)}


def _device_infos(_host: ZStackHost, _name: str) -> Reply:
    """AttachNicResponse.virtualDeviceInfoList: vmhost reports no guest PCI addresses (the driver contract has no
    such read), so the management node records none for the NIC, as for a NIC it never asked an address for."""
    return {"virtualDeviceInfoList": []}


def _change(
    kind: str, conversion: Conversion, answer: Answer = _no_fields, *, absent_is_done: bool = False
) -> Callable[[ZStackHost, Command], Job]:
    """A path that applies one converted change to the VM of cmd.vmUuid and answers with `answer`'s fields."""

    def handle(host: ZStackHost, cmd: Command) -> Job:
        record = (
            host.find(cmd.get("vmUuid"), "vmUuid") if absent_is_done else host.existing(cmd.get("vmUuid"), "vmUuid")
        )
        if record is None:
            return Job(f"zstack-{kind}", None, None, dict)  # ZStack's agent: nothing to detach from, success
        return Job(
            f"zstack-{kind}", record.name, record.uuid, lambda: _apply(host, record.name, cmd, conversion, answer)
        )

    return handle


def _apply(host: ZStackHost, name: str, cmd: Command, conversion: Conversion, answer: Answer) -> Reply:
    """Convert against the spec as it is now (the operation holds the VM), then update live; None: already so."""
    change = conversion(cmd, host.engine.record(name).spec)
    if change is not None:
        try:
            host.engine.update(name, change.patch, live=True)
        except SpecError as exc:
            raise SpecError([_in_zstack_words(change, problem) for problem in exc.problems]) from None
    return answer(host, name)


def _in_zstack_words(change: convert.Change, problem: Problem) -> Problem:
    """The plan names spec paths (nics.1.source); the management node knows its own fields (nic)."""
    field = change.zstack_field(problem.path)
    return Problem(field, f"{problem.message} (vmhost: {problem.path})") if field else problem


def resize_volume(host: ZStackHost, cmd: Command) -> Job:
    """/volume/resize: a block resize of the running disk, as ZStack's agent does. ZStack's volumes are its own
    files (or RBD images), whose size no spec field holds, so this is no update: the driver grows the image under
    the VM's lock, the shrink check is the driver's, and a `changed` event says what grew."""
    record = host.existing(cmd.get("vmUuid"), "vmUuid")
    return Job("zstack-resize-volume", record.name, record.uuid, lambda: _grow(host, record.name, cmd))


def _grow(host: ZStackHost, name: str, cmd: Command) -> Reply:
    engine = host.engine
    with engine.locks.hold(name):
        record = engine.record(name)
        growth = convert.resize_volume(cmd, record.spec)
        if VmState(engine.get(name)["state"]) not in ALIVE:
            why = "is not running (ZStack grows a stopped VM's volume through its primary-storage agent)"
            raise SpecError([Problem("vmUuid", f"{name} {why}")])
        engine.driver.require(name, Capability.DISK_RESIZE)
        try:
            engine.driver.resize_disk(name, growth.target, growth.size)
        except HypervisorError as exc:
            raise SpecError([Problem("size", exc.message)]) from None
    reason = f"disks[{growth.target}]: grown live to {growth.size} bytes"
    engine.events.publish(VmEvent(vm=name, uuid=record.uuid, type="changed", state="", reason=reason))
    return {}


def _refused_snapshot(path: str) -> Callable[[ZStackHost, Command], Job]:
    """Snapshot paths: the dialect's VMs only (as everywhere), then the refusal with ZStack's field and why."""

    def handle(host: ZStackHost, cmd: Command) -> Job:
        host.existing(cmd.get("vmUuid"), "vmUuid")
        raise convert.refused_snapshot(path)

    return handle


PATHS: dict[str, Callable[[ZStackHost, Command], Job]] = {
    "/vm/attachnic": _change("attach-nic", convert.attach_nic, _device_infos),
    "/vm/detachnic": _change("detach-nic", convert.detach_nic, absent_is_done=True),
    "/vm/online/changecpumem": _change("change-cpu-memory", convert.change_cpu_memory, _cpu_and_memory),
    "/vm/increase/cpu": _change("increase-cpu", partial(convert.change_cpu_memory, memory=False), _cpu_num),
    "/vm/increase/mem": _change("increase-memory", partial(convert.change_cpu_memory, cpu=False), _memory_size),
    "/vm/iso/attach": _change("attach-iso", convert.attach_iso),
    "/vm/iso/detach": _change("detach-iso", convert.detach_iso),
    "/volume/resize": resize_volume,
    **{path: _refused_snapshot(path) for path in convert.SNAPSHOT_REFUSALS},
}
"""ZStack's paths (vm_plugin.py's KVM_*_PATH) and what serves each; routes.py registers them with the others."""

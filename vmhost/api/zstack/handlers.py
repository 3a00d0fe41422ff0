"""What each ZStack agent path does with the engine, and the reply fields it returns.

Async paths return a Job (planned at once, run as an operation); sync paths return their reply directly.
VMs are found by vmInstanceUuid, and only among VMs created through this dialect (they carry the zstack.vm-name
label, which /v1 refuses to set or change): a VM made through vmhost's own API or CLI is, to the management node,
a VM this host does not have, so a trusted source without a token can neither see nor change it.
"""

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from vmhost.api.zstack import hypervisor
from vmhost.api.zstack.tasks import Job, Reply
from vmhost.dialects import zstack as dialect
from vmhost.dialects.zstack.devices import CephKey, ceph_key, ceph_key_of
from vmhost.drivers.base import CephSecretStore
from vmhost.engine import Engine
from vmhost.engine.states import VmState
from vmhost.errors import Conflict, HostResourceError, NotFound
from vmhost.store.sqlite import VmRecord

Command = Mapping[str, Any]

# ZStack's agent vocabulary (KvmVmState); stopped VMs are reported by absence, as ZStack undefines them.
ZSTACK_STATES = {
    VmState.RUNNING: "Running",
    VmState.PAUSED: "Paused",
    VmState.CRASHED: "Crashed",
    VmState.STOPPING: "Running",
    VmState.MIGRATING: "Running",
}
ABSENT_STATE = "Shutdown"
STOP_TYPES = ("grace", "cold", "force")
ALIVE = (VmState.RUNNING, VmState.PAUSED)
REDEFINE_AFTER_KILL = (VmState.PAUSED, VmState.CRASHED, VmState.STOPPING)


def replacement_patch(old: Any, new: Any) -> Any:
    """A JSON merge patch that turns `old` into exactly `new` (keys missing from `new` are deleted)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        patch[key] = replacement_patch(old.get(key), value)
    return patch


def _reply_only(action: Callable[[], object]) -> Callable[[], Reply]:
    """Work for commands whose reply is just {success, error}: whatever the engine returns is not sent."""

    def work() -> Reply:
        action()
        return {}

    return work


def _already_done() -> Reply:
    """Stopping or destroying a VM that is not on this host: ZStack's agent answers success."""
    return {}


def _zstack_state(state: VmState | None) -> str:
    return ZSTACK_STATES.get(state, ABSENT_STATE) if state is not None else ABSENT_STATE


def is_zstack_vm(record: VmRecord) -> bool:
    return dialect.NAME_LABEL in record.spec.get("labels", {})


def stop_timeout(cmd: Command, ceiling: float) -> float | None:
    """Seconds; ZStack sends 0 or nothing for "use your default". Above the ceiling is refused, not shortened."""
    value = cmd.get("timeout")
    if not dialect.is_set(value):
        return None
    if value > ceiling:
        raise dialect.Unmappable("timeout", f"must be at most {ceiling:g} seconds (max_stop_timeout); got {value}")
    return float(value)


@dataclass
class HostIdentity:
    """What /host/connect told us; /host/ping echoes it so the management node notices an agent restart."""

    host_uuid: str | None = None
    send_command_url: str | None = None


class ZStackHost:
    def __init__(self, engine: Engine, console_listen: str = dialect.LOOPBACK, max_stop_timeout: float = 600.0):
        self.engine = engine
        self.console_listen = console_listen
        self.max_stop_timeout = max_stop_timeout
        self.identity = HostIdentity()

    # ---- lookups ---------------------------------------------------------------------------------

    def find(self, value: object, path: str) -> VmRecord | None:
        """The dialect's VM for the ZStack uuid field at `path`; None when this host has none (for ZStack)."""
        return self._owned(dialect.vm_uuid(value, path))

    def _owned(self, canonical_uuid: str) -> VmRecord | None:
        """The dialect's VM with this uuid; any other VM (or a VM *named* like the uuid) is not there for ZStack."""
        record = self._lookup(canonical_uuid)
        if record is None or record.uuid != canonical_uuid or not is_zstack_vm(record):
            return None
        return record

    def _lookup(self, name_or_uuid: str) -> VmRecord | None:
        try:
            return self.engine.record(name_or_uuid)
        except NotFound:
            return None

    def existing(self, value: object, path: str) -> VmRecord:
        """Like find; a VM this host does not have is an error ("no VM"), as in ZStack's agent."""
        record = self.find(value, path)
        if record is None:
            raise NotFound(f"no VM with uuid {value} on this host")
        return record

    def _state(self, record: VmRecord) -> VmState:
        return VmState(self.engine.get(record.name)["state"])

    # ---- host ------------------------------------------------------------------------------------

    def connect(self, cmd: Command) -> Reply:
        """Sync. Remembers the host uuid and the management node's command URL; answers with versions."""
        self.identity = HostIdentity(cmd.get("hostUuid"), cmd.get("sendCommandUrl"))
        facts = hypervisor.host_facts(self.engine)
        return {"libvirtVersion": facts.libvirt_version, "qemuVersion": facts.qemu_version}

    def ping(self, _cmd: Command) -> Job:
        identity = self.identity
        reply = {"hostUuid": identity.host_uuid, "sendCommandUrl": identity.send_command_url}
        return Job("zstack-ping", None, None, lambda: reply)

    def capacity(self, _cmd: Command) -> Job:
        return Job("zstack-capacity", None, None, self._capacity)

    def _capacity(self) -> Reply:
        """usedCpu counts the vCPUs and usedMemory the memory of VMs that run (or are paused) now."""
        facts = hypervisor.host_facts(self.engine)
        alive = [self.engine.spec_of(record) for record, state in self.engine.list_vms() if state in ALIVE]
        return {
            "cpuNum": facts.cpus,
            "cpuSpeed": facts.cpu_mhz,
            "cpuSockets": facts.cpu_sockets,
            "usedCpu": sum(spec.cpu.vcpus for spec in alive),
            "totalMemory": facts.memory_total,
            "usedMemory": sum(spec.memory.size for spec in alive),
        }

    # ---- start -----------------------------------------------------------------------------------

    def start(self, cmd: Command) -> Job:
        document = dialect.start_vm_spec(cmd, self.console_listen)
        return self.start_document(document, ceph_key(cmd))

    def start_document(self, document: dict[str, Any], key: CephKey | None = None) -> Job:
        """Start (creating or redefining) the VM of a spec document converted from a start command; `key` is set
        into its libvirt secret first (as ZStack's agent does) and stays out of the document."""
        record = self._owned(document["uuid"])
        document["name"] = record.name if record else self._free_name(document)
        secret = self._secret_holder(key)
        return Job("zstack-start", document["name"], document["uuid"], lambda: self._with(secret, document))

    def _secret_holder(self, key: CephKey | None) -> Callable[[], AbstractContextManager[None]]:
        """What holds the command's Ceph key during the start; refused at once when no driver keeps secrets."""
        if key is None:
            return nullcontext
        stores = [d for d in self.engine.driver.drivers.values() if isinstance(d, CephSecretStore)]
        if not stores:
            raise dialect.Unmappable("addons.ceph_secret_key", "this host's VM driver cannot keep Ceph secrets")
        return partial(stores[0].ceph_secret, key.uuid, key.key)

    def _with(self, secret: Callable[[], AbstractContextManager[None]], document: dict[str, Any]) -> Reply:
        with secret():
            return self._start(document)

    def create_ceph_secret(self, cmd: Command) -> Job:
        """/vm/createcephsecret {userKey, uuid}: the management node sets a Ceph primary storage's key ahead of
        attaching its volumes; the secret stays until a VM using it is deleted and no other uses it."""
        secret = self._secret_holder(ceph_key_of(cmd.get("uuid"), cmd.get("userKey"), "uuid", "userKey"))

        def work() -> Reply:
            with secret():
                return {}

        return Job("zstack-ceph-secret", None, None, work)

    def _free_name(self, document: dict[str, Any]) -> str:
        """ZStack names need not be unique; a name another VM holds falls back to one made from the uuid."""
        taken = self._lookup(document["name"])
        return dialect.fallback_name(document["uuid"]) if taken else str(document["name"])

    def _start(self, document: dict[str, Any]) -> Reply:
        """Running: nothing to do (ZStack answers success too). Otherwise define the command's config, then start.
        A uuid held by a native VM is refused by the create (uuid in use), never redefined."""
        record = self._owned(document["uuid"])
        if record is None:
            self.engine.create(document, start=True)
            return {}
        state = self._state(record)
        if state == VmState.RUNNING:
            return {}
        if state in REDEFINE_AFTER_KILL:
            self.engine.kill(record.name)
        self.engine.update(record.name, replacement_patch(record.spec, document))
        self.engine.start(record.name)
        return {}

    # ---- power -----------------------------------------------------------------------------------

    def stop(self, cmd: Command) -> Job:
        """grace: ACPI, forced after `timeout` seconds; cold and force: at once. A VM not here is stopped."""
        stop_type = cmd.get("type") or "grace"
        if stop_type not in STOP_TYPES:
            raise dialect.Unmappable("type", f"must be one of {', '.join(STOP_TYPES)}; got {stop_type!r}")
        timeout = stop_timeout(cmd, self.max_stop_timeout)
        record = self.find(cmd.get("uuid"), "uuid")
        if record is None:
            return Job("zstack-stop", None, None, _already_done)
        stop = partial(self._stop, record.name, force=stop_type != "grace", timeout=timeout)
        return Job("zstack-stop", record.name, record.uuid, _reply_only(stop))

    def _stop(self, name: str, force: bool, timeout: float | None) -> None:
        """A crashed guest kept by on_crash preserve cannot answer the ACPI button (libvirt refuses to press it):
        ZStack's agent ends such a grace stop with a destroy, so a stop of a crashed VM is a forced one here."""
        crashed = VmState(self.engine.get(name)["state"]) == VmState.CRASHED
        self.engine.stop(name, force=force or crashed, timeout=timeout)

    def destroy(self, cmd: Command) -> Job:
        record = self.find(cmd.get("uuid"), "uuid")
        if record is None:
            return Job("zstack-destroy", None, None, _already_done)
        return Job("zstack-destroy", record.name, record.uuid, _reply_only(partial(self.engine.kill, record.name)))

    def reboot(self, cmd: Command) -> Job:
        """Like ZStack's agent (Vm.reboot): stop (gracefully, forced at the timeout), give the VM bootDev as its
        boot order, then start again."""
        timeout = stop_timeout(cmd, self.max_stop_timeout)
        devices = dialect.boot_devices(cmd)
        record = self.existing(cmd.get("uuid"), "uuid")
        work = partial(self._reboot, record.name, timeout, devices)
        return Job("zstack-reboot", record.name, record.uuid, _reply_only(work))

    def _reboot(self, name: str, timeout: float | None, devices: list[str]) -> None:
        self._stop(name, force=False, timeout=timeout)
        order = dialect.reboot_boot_order(devices, self.engine.spec_of(self.engine.record(name)))
        if order is not None:
            self.engine.update(name, {"boot": {"order": order}})
        self.engine.start(name)

    def pause(self, cmd: Command) -> Job:
        record = self.existing(cmd.get("uuid"), "uuid")
        return Job("zstack-pause", record.name, record.uuid, _reply_only(partial(self.engine.pause, record.name)))

    def resume(self, cmd: Command) -> Job:
        record = self.existing(cmd.get("uuid"), "uuid")
        return Job("zstack-resume", record.name, record.uuid, _reply_only(partial(self.engine.resume, record.name)))

    # ---- states ----------------------------------------------------------------------------------

    def vmsync(self, _cmd: Command) -> Job:
        return Job("zstack-vmsync", None, None, self._vm_states)

    def _vm_states(self) -> Reply:
        states: dict[str, str] = {}
        in_shutdown: list[str] = []
        for record, state in self.engine.list_vms():
            if not is_zstack_vm(record) or state not in ZSTACK_STATES:
                continue
            key = dialect.zstack_uuid(record.uuid)
            states[key] = ZSTACK_STATES[state]
            if state == VmState.STOPPING:
                in_shutdown.append(key)
        return {"states": states, "vmInShutdowns": in_shutdown}

    def checkstate(self, cmd: Command) -> Job:
        asked = [str(u) for u in dialect.json_list(cmd.get("vmUuids"), "vmUuids")]
        return Job("zstack-checkstate", None, None, lambda: self._checked(asked))

    def _checked(self, asked: list[str]) -> Reply:
        """Each asked uuid, keyed as the management node wrote it; one not running here (or not ZStack's): Shutdown."""
        current = {record.uuid: state for record, state in self.engine.list_vms() if is_zstack_vm(record)}
        states = {}
        for value in asked:
            try:
                states[value] = _zstack_state(current.get(dialect.vm_uuid(value)))
            except dialect.Unmappable:
                states[value] = ABSENT_STATE
        return {"states": states}

    def getvncport(self, cmd: Command) -> Job:
        record = self.existing(cmd.get("vmUuid"), "vmUuid")
        return Job("zstack-getvncport", None, record.uuid, lambda: self._console_port(record))

    def _console_port(self, record: VmRecord) -> Reply:
        if self._state(record) not in ALIVE:
            raise Conflict(f"{record.name} is not running, so it has no console port")
        ports = hypervisor.graphics_ports(self.engine, record.name)
        if not ports:
            raise HostResourceError(f"{record.name} has no VNC or SPICE console")
        protocol = "vnc" if "vnc" in ports else "spice"
        return {
            "port": ports[protocol],
            "protocol": protocol,
            "vncPort": ports.get("vnc"),
            "spicePort": ports.get("spice"),
        }

    # ---- volumes ---------------------------------------------------------------------------------

    def attach_volume(self, cmd: Command) -> Job:
        record = self.existing(cmd.get("vmInstanceUuid"), "vmInstanceUuid")
        disk = dialect.data_volume_disk(cmd, record.spec.get("boot", {}).get("machine"))
        return Job("zstack-attach-volume", record.name, record.uuid, lambda: self._attached(record, disk))

    def _attached(self, record: VmRecord, disk: dict[str, Any]) -> Reply:
        """Attaching a volume that is already attached succeeds without plugging in a second copy."""
        if self._target_of(record.name, disk["source"]) is None:
            self.engine.attach_disk(record.name, disk)
        return {}

    def detach_volume(self, cmd: Command) -> Job:
        record = self.existing(cmd.get("vmInstanceUuid"), "vmInstanceUuid")
        volume = dialect.json_object(cmd.get("volume"), "volume")
        source = dialect.volume_source(volume, "volume")
        return Job("zstack-detach-volume", record.name, record.uuid, lambda: self._detached(record, source))

    def _detached(self, record: VmRecord, source: dict[str, Any]) -> Reply:
        """A volume not attached (any more) is detached: success, as ZStack's agent answers. On a running VM
        the engine waits until the guest has released the disk and keeps the definition if it never does, so
        the management node never hands a volume to another VM while this one still writes to it."""
        target = self._target_of(record.name, source)
        if target is not None:
            self.engine.detach_disk(record.name, target)
        return {}

    def _target_of(self, name: str, source: dict[str, Any]) -> str | None:
        wanted = dialect.source_identity(source)
        for disk in self.engine.record(name).spec.get("disks", []):
            if dialect.source_identity(disk["source"]) == wanted:
                return str(disk["target"])
        return None

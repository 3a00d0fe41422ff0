"""Changes to a running libvirt domain: NIC plug/unplug, vCPU count, memory (balloon and DIMMs), disk growth, media.

Each function takes the running domain and, where a device is plugged, the domain rendered from the spec that
holds the device, so that the live device is exactly what define() writes persistently (plugins' hooks included).
Only the live domain changes here: the engine redefines the persistent definition afterwards.
"""

import time
from collections.abc import Callable
from typing import TypeVar

import libvirt
from lxml import etree

from vmhost.drivers.libvirt.errors import translate
from vmhost.errors import HypervisorError, NotFound
from vmhost.render.libvirt.memory import dimm_element

T = TypeVar("T")

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
POLL = 0.1
VCPU_UNPLUG_WAIT = 10.0


def _call(dom: libvirt.virDomain, action: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), action) from None


def _live(dom: libvirt.virDomain) -> etree._Element:
    return etree.fromstring(_call(dom, "query", lambda: dom.XMLDesc(0)).encode())


def _found(root: etree._Element, path: str) -> etree._Element | None:
    nodes = root.xpath(path)
    return nodes[0] if isinstance(nodes, list) and nodes and isinstance(nodes[0], etree._Element) else None


def _device(rendered: etree._Element, path: str, what: str) -> str:
    node = _found(rendered, path)
    if node is None:
        raise NotFound(f"the spec of {rendered.findtext('name')} has no {what}")
    return etree.tostring(node, encoding="unicode")


def _nic_path(mac: str) -> str:
    return f"devices/interface[mac/@address='{mac}']"


def attach_nic(dom: libvirt.virDomain, rendered: etree._Element, mac: str) -> None:
    """Plug the rendered <interface> with this MAC into the running domain."""
    xml = _device(rendered, _nic_path(mac), f"NIC {mac}")
    _call(dom, f"attach NIC {mac} to", lambda: dom.attachDeviceFlags(xml, LIVE))


def detach_nic(dom: libvirt.virDomain, rendered: etree._Element, mac: str, timeout: float) -> None:
    """Ask the guest to release the NIC and wait, up to `timeout` s, until the live XML no longer has it.

    The guest must cooperate (ACPI/PCIe unplug): a paused or unwilling guest keeps it, and then the request stays
    pending in QEMU (the NIC may still go later). libvirt itself waits up to 5 s inside the detach call.
    """
    xml = _device(rendered, _nic_path(mac), f"NIC {mac}")
    deadline = time.monotonic() + timeout
    _call(dom, f"detach NIC {mac} from", lambda: dom.detachDeviceFlags(xml, LIVE))
    while _found(_live(dom), _nic_path(mac)) is not None:
        if time.monotonic() >= deadline:
            raise HypervisorError(
                f"the guest of {dom.name()} did not release NIC {mac} within {timeout:g}s",
                "the unplug request stays pending in QEMU; the NIC may still disappear when the guest answers",
            )
        time.sleep(POLL)


def set_vcpus(dom: libvirt.virDomain, count: int) -> None:
    """Hot-plug or unplug vCPUs; the ceiling is the domain's <vcpu> (the spec's cpu.max_vcpus)."""
    ceiling = _call(dom, "query", lambda: dom.vcpusFlags(LIVE | libvirt.VIR_DOMAIN_VCPU_MAXIMUM))
    if not 1 <= count <= ceiling:
        raise HypervisorError(f"{dom.name()} can have 1 to {ceiling} vCPUs (cpu.max_vcpus), not {count}")
    try:
        dom.setVcpusFlags(count, LIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_TIMEOUT:
            raise translate(exc, dom.name(), f"set {count} vCPUs on") from None
        _wait_vcpus(dom, count)


def _wait_vcpus(dom: libvirt.virDomain, count: int) -> None:
    """libvirt stops waiting for the guest to eject an unplugged vCPU after 5 s. Seen on libvirt 9.0 under a loaded
    TCG host: the guest and QEMU then complete the unplug, but libvirt's count never follows."""
    deadline = time.monotonic() + VCPU_UNPLUG_WAIT
    while (live := _call(dom, "query", lambda: dom.vcpusFlags(LIVE))) != count:
        if time.monotonic() >= deadline:
            raise HypervisorError(
                f"the guest of {dom.name()} did not confirm the vCPU unplug in time (libvirt still counts {live})",
                "QEMU may complete the unplug later; libvirt's count is then stale until the VM restarts",
            )
        time.sleep(POLL)


def set_memory(dom: libvirt.virDomain, size: int) -> None:
    """Balloon to `size` bytes within the memory plugged now; above it, plug one DIMM of the missing size first.

    A Linux guest uses hot-plugged memory in whole memory blocks (128 MiB on x86-64): sizes that are not a
    multiple of that leave the rest unusable by the guest.
    """
    want = _kib(size)
    domain = _live(dom)
    plugged = int(domain.findtext("memory", "0"))
    if want > plugged:
        _plug_dimm(dom, domain, want - plugged)
    current = _call(dom, "query", dom.info)[2]
    if current != want:
        _call(dom, "balloon the memory of", lambda: dom.setMemoryFlags(want, LIVE))


def _plug_dimm(dom: libvirt.virDomain, domain: etree._Element, missing_kib: int) -> None:
    ceiling = domain.find("maxMemory")
    plugged = int(domain.findtext("memory", "0"))
    if ceiling is None:
        raise HypervisorError(
            f"{dom.name()} has {plugged // 1024} MiB plugged and no memory.max_size: it cannot grow while running"
        )
    limit, slots = int(ceiling.text or 0), int(ceiling.get("slots", "0"))
    if plugged + missing_kib > limit:
        raise HypervisorError(f"{dom.name()} can grow to at most {limit // 1024} MiB (memory.max_size)")
    if len(domain.findall("devices/memory")) >= slots:
        raise HypervisorError(f"{dom.name()} has no free memory slot left (memory.slots = {slots})")
    xml = etree.tostring(dimm_element(missing_kib * 1024, 0), encoding="unicode")
    _call(dom, "plug a memory module into", lambda: dom.attachDeviceFlags(xml, LIVE))


def resize_disk(dom: libvirt.virDomain, target: str, size: int) -> None:
    """Grow the disk the guest sees as `target`; shrinking would cut off the guest's data, so it is refused."""
    capacity = _call(dom, f"query disk {target} of", lambda: dom.blockInfo(target))[0]
    if size < capacity:
        raise HypervisorError(f"disk {target} of {dom.name()} is {capacity} bytes; shrinking to {size} is refused")
    if size > capacity:
        resize = libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES
        _call(dom, f"resize disk {target} of", lambda: dom.blockResize(target, size, resize))


def change_media(dom: libvirt.virDomain, rendered: etree._Element, target: str) -> None:
    """The rendered drive carries the new ISO as its <source>, or none: libvirt then ejects the media."""
    xml = _device(rendered, f"devices/disk[@device='cdrom'][target/@dev='{target}']", f"cdrom {target}")
    _call(dom, f"change the media in {target} of", lambda: dom.updateDeviceFlags(xml, LIVE))


def _kib(size: int) -> int:
    if size % 1024:
        raise HypervisorError(f"memory size {size} is not a whole number of KiB")
    return size // 1024

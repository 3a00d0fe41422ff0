"""Guest memory: boot size, hotplug ceiling, hugepage backing and the balloon device."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, kib, sub
from vmhost.spec import VMSpec


def memory_elements(spec: VMSpec) -> list[etree._Element]:
    """<maxMemory> (hotplug only), <memory>, <currentMemory> and <memoryBacking>, in libvirt's own order.

    The NUMA cell that memory hotplug requires is part of <cpu>; see cpu.numa_cells.
    """
    mem = spec.memory
    size = kib(mem.size, "memory.size")
    parts = []
    if mem.max_size is not None:
        parts.append(element("maxMemory", kib(mem.max_size, "memory.max_size"), slots=mem.slots, unit="KiB"))
    parts += [element("memory", size, unit="KiB"), element("currentMemory", size, unit="KiB")]
    backing = memory_backing(spec)
    if backing is not None:
        parts.append(backing)
    return parts


def memory_backing(spec: VMSpec) -> etree._Element | None:
    """Hugepages, no KSM merging and shared access, in libvirt's order; None when memory is plain private RAM."""
    mem = spec.memory
    backing = element("memoryBacking")
    if mem.hugepages:
        sub(backing, "hugepages")
    if not mem.merge_pages:
        sub(backing, "nosharepages")
    if mem.access == "shared":
        sub(backing, "access", mode="shared")
    return backing if len(backing) else None


def balloon_element(spec: VMSpec) -> etree._Element:
    """Always explicit: with no <memballoon> libvirt would add a virtio one the spec did not ask for."""
    if not spec.memory.balloon:
        return element("memballoon", model="none")
    balloon = element("memballoon", model="virtio")
    if spec.memory.balloon_stats_period:
        sub(balloon, "stats", period=spec.memory.balloon_stats_period)
    return balloon


def dimm_element(size: int, node: int) -> etree._Element:
    """A memory module of `size` bytes in guest NUMA cell `node`, for hot-plugging into a running VM."""
    dimm = element("memory", model="dimm")
    target = sub(dimm, "target")
    sub(target, "size", kib(size, "memory module size"), unit="KiB")
    sub(target, "node", node)
    return dimm

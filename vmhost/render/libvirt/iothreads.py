"""IOThreads: <iothreads> and every id in <iothreadids>, and the pins in <cputune>."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec import VMSpec


def iothread_elements(spec: VMSpec) -> list[etree._Element]:
    """Nothing without IOThreads; otherwise the count and each id written out, so disks and pins name ids that
    the document itself defines (libvirt would otherwise number the unnamed ones on its own)."""
    if not spec.iothreads.count:
        return []
    ids = element("iothreadids")
    for iothread in spec.iothreads.ids:
        sub(ids, "iothread", id=iothread)
    return [element("iothreads", spec.iothreads.count), ids]


def with_iothread_pins(cputune: etree._Element | None, spec: VMSpec) -> etree._Element | None:
    """`cputune` with an <iothreadpin> per pinned IOThread (made when the VM pins nothing else)."""
    if not spec.iothreads.pins:
        return cputune
    node = cputune if cputune is not None else element("cputune")
    for pin in sorted(spec.iothreads.pins, key=lambda p: p.id):
        sub(node, "iothreadpin", iothread=pin.id, cpuset=pin.host_cpus)
    return node

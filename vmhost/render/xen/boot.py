"""How the guest boots: a kernel straight from the host (kernel/ramdisk/cmdline), or HVM firmware and boot order."""

from vmhost.render.xen.context import Problems
from vmhost.render.xen.domain import domain_type
from vmhost.render.xen.values import Settings, XlString
from vmhost.spec import VMSpec

BOOT_LETTERS = {"hd": "c", "cdrom": "d", "network": "n"}
"""xl.cfg(5) boot=: c is the hard disk, d the CD-ROM, n the network."""


def boot_settings(spec: VMSpec) -> Settings:
    settings: Settings = {}
    kernel = spec.boot.kernel
    if kernel is not None:
        settings["kernel"] = XlString(str(kernel.kernel))
        if kernel.initrd is not None:
            settings["ramdisk"] = XlString(str(kernel.initrd))
        settings["cmdline"] = XlString(kernel.cmdline)
    if domain_type(spec) == "hvm":
        settings["firmware"] = XlString(spec.boot.firmware)
        order = boot_order(spec)
        if order:
            settings["boot"] = XlString(order)
    return settings


def boot_order(spec: VMSpec) -> str:
    """From the spec's device classes, or else from per-device boot_order (xl orders classes, not devices)."""
    classes: list[str] = list(spec.boot.order)
    if not classes:
        ordered = [(d.boot_order, "hd") for d in spec.disks if d.boot_order is not None]
        ordered += [(c.boot_order, "cdrom") for c in spec.cdroms if c.boot_order is not None]
        ordered += [(n.boot_order, "network") for n in spec.nics if n.boot_order is not None]
        classes = [kind for _, kind in sorted(ordered)]
    return "".join(dict.fromkeys(BOOT_LETTERS[kind] for kind in classes))


def boot_problems(spec: VMSpec) -> Problems:
    if spec.boot.kernel is not None and spec.boot.firmware == "uefi" and domain_type(spec) == "hvm":
        return [("boot.firmware", "Xen boots an HVM guest's kernel directly only with BIOS (SeaBIOS) firmware")]
    return []

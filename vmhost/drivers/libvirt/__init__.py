"""The libvirt (QEMU/KVM) driver."""

from vmhost.drivers.libvirt.driver import LibvirtDriver

__all__ = ["LibvirtDriver"]

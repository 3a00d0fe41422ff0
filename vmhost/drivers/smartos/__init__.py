"""The SmartOS driver: bhyve or kvm VMs through the vmadm command line."""

from vmhost.drivers.smartos.driver import VmadmDriver

__all__ = ["VmadmDriver"]

"""The device and live-change calls of a driver that changes a VM only while it is stopped (xl, vmadm): each
refuses with the capability it lacks and says to stop the VM first."""

from vmhost.drivers.base import Capability, Resources
from vmhost.errors import Unsupported
from vmhost.spec import VMSpec


class StopToChange:
    kind: str

    def _stop_first(self, capability: Capability, name: str, change: str) -> Unsupported:
        return Unsupported(self.kind, capability, f"stop {name} to {change}")

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise self._stop_first(Capability.DISK_HOTPLUG, spec.name, f"add disk {target}")

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise self._stop_first(Capability.DISK_HOTPLUG, spec.name, f"remove disk {target}")

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        raise self._stop_first(Capability.NIC_HOTPLUG, spec.name, f"add NIC {mac}")

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        raise self._stop_first(Capability.NIC_HOTPLUG, spec.name, f"remove NIC {mac}")

    def set_vcpus(self, name: str, count: int) -> None:
        raise self._stop_first(Capability.VCPU_HOTPLUG, name, "change its vCPUs")

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        raise self._stop_first(Capability.MEMORY_HOTPLUG, spec.name, "change its memory")

    def resize_disk(self, name: str, target: str, size: int) -> None:
        raise self._stop_first(Capability.DISK_RESIZE, name, f"grow disk {target}")

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise self._stop_first(Capability.MEDIA_CHANGE, spec.name, f"change the media in {target}")

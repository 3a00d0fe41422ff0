"""Host PCI devices as xl PCI specifications (xl-pci-configuration(5))."""

from vmhost.render.xen.context import Problems
from vmhost.render.xen.values import Settings, strings
from vmhost.spec import VMSpec
from vmhost.spec.passthrough import PciDevice


def pci_settings(spec: VMSpec) -> Settings:
    devices = spec.passthrough.pci
    return {"pci": strings(pci_spec(device) for device in devices)} if devices else {}


def pci_spec(device: PciDevice) -> str:
    """seize=1 is xl's managed mode: xl makes the device assignable itself (as `pci-assignable-add` would);
    unmanaged devices are reserved by vmhost before the domain is created."""
    return f"{device.address},seize=1" if device.managed else device.address


def passthrough_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    if spec.passthrough.usb:
        problems.append(("passthrough.usb", "USB passthrough is not supported on the xen driver"))
    if spec.usb.redirection:
        problems.append(("usb.redirection", "SPICE USB redirection is not supported on the xen driver"))
    return problems

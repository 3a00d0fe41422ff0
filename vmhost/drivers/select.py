"""The composition root for drivers: which drivers a host runs, and where their events come from."""

from vmhost.config import HostConfig
from vmhost.drivers.base import Driver, EventSource
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.drivers.libvirt.events import LibvirtEventMonitor
from vmhost.drivers.multi import DriverSet
from vmhost.drivers.polling import CompositeEventSource, PollingEventSource
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.xen import XlDriver
from vmhost.render.libvirt import RenderHook


def build_drivers(config: HostConfig, render_hooks: tuple[RenderHook, ...] = ()) -> DriverSet:
    """The host's VM driver (config.vm_driver) and the container driver; render hooks apply to domain XML."""
    drivers: list[Driver] = [
        _vm_driver(config, render_hooks),
        RuncDriver(config.runc_command, config.data_dir / "containers"),
    ]
    return DriverSet({driver.kind: driver for driver in drivers}, config.vm_driver)


def _vm_driver(config: HostConfig, render_hooks: tuple[RenderHook, ...]) -> Driver:
    """Render hooks change libvirt domain XML; the other VM drivers render other formats."""
    if config.vm_driver == "xen":
        return XlDriver(config.xl_command, config.data_dir / "xen")
    if config.vm_driver == "smartos":
        return VmadmDriver(config.vmadm_command, brand=config.vmadm_brand, reboot_timeout=config.stop_timeout)
    return LibvirtDriver(config.libvirt_uri, config.accel, render_hooks)


def build_event_source(config: HostConfig, drivers: DriverSet) -> EventSource:
    """libvirt pushes its events; every other driver is polled."""
    return CompositeEventSource(
        [
            LibvirtEventMonitor(config.libvirt_uri) if kind == "libvirt" else PollingEventSource(driver)
            for kind, driver in drivers.drivers.items()
        ]
    )

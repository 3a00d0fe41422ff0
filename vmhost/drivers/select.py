"""The composition root for drivers: which drivers a host runs, and where their events come from."""

from vmhost.config import HostConfig
from vmhost.drivers.base import Driver, EventSource
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.drivers.libvirt.events import LibvirtEventMonitor
from vmhost.drivers.multi import DriverSet
from vmhost.drivers.polling import CompositeEventSource, PollingEventSource


def build_drivers(config: HostConfig) -> DriverSet:
    """The host's VM driver (config.vm_driver) and the container driver."""
    drivers: list[Driver] = [_vm_driver(config)]
    return DriverSet({driver.kind: driver for driver in drivers}, config.vm_driver)


def _vm_driver(config: HostConfig) -> Driver:
    return LibvirtDriver(config.libvirt_uri, config.accel)


def build_event_source(config: HostConfig, drivers: DriverSet) -> EventSource:
    """libvirt pushes its events; every other driver is polled."""
    return CompositeEventSource(
        [
            LibvirtEventMonitor(config.libvirt_uri) if kind == "libvirt" else PollingEventSource(driver)
            for kind, driver in drivers.drivers.items()
        ]
    )

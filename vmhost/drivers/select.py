"""The composition root for drivers: which drivers a host runs, where their events come from, and which plugin
render hooks each one applies."""

from collections.abc import Mapping
from dataclasses import dataclass

from vmhost.config import HostConfig
from vmhost.drivers.base import Driver, EventSource
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.drivers.libvirt.events import LibvirtEventMonitor
from vmhost.drivers.multi import DriverSet
from vmhost.drivers.polling import CompositeEventSource, PollingEventSource
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.xen import XlDriver
from vmhost.render.hooks import DocumentHook
from vmhost.render.libvirt import RenderHook


@dataclass(frozen=True)
class RenderHooks:
    """Plugins' render hooks per renderer: libvirt domain XML, xl.cfg settings, vmadm payload, OCI config."""

    libvirt: tuple[RenderHook, ...] = ()
    xl: tuple[DocumentHook, ...] = ()
    vmadm: tuple[DocumentHook, ...] = ()
    oci: tuple[DocumentHook, ...] = ()


NO_HOOKS = RenderHooks()
RENDER_HOOK_OF = {"libvirt": "render", "xen": "render_xl", "smartos": "render_vmadm"}
"""The plugin hook (VmhostPlugin method) that changes what each VM driver renders."""


def build_drivers(config: HostConfig, render_hooks: RenderHooks = NO_HOOKS) -> DriverSet:
    """The host's VM driver (config.vm_driver) and the container driver, each with its renderer's hooks."""
    drivers: list[Driver] = [
        _vm_driver(config, render_hooks),
        RuncDriver(config.runc_command, config.data_dir / "containers", render_hooks.oci),
    ]
    return DriverSet({driver.kind: driver for driver in drivers}, config.vm_driver)


def _vm_driver(config: HostConfig, hooks: RenderHooks) -> Driver:
    if config.vm_driver == "xen":
        return XlDriver(config.xl_command, config.data_dir / "xen", render_hooks=hooks.xl)
    if config.vm_driver == "smartos":
        return VmadmDriver(
            config.vmadm_command, brand=config.vmadm_brand, reboot_timeout=config.stop_timeout, render_hooks=hooks.vmadm
        )
    return LibvirtDriver(config.libvirt_uri, config.accel, hooks.libvirt)


def build_event_source(config: HostConfig, drivers: Mapping[str, Driver]) -> EventSource:
    """libvirt pushes its events; every other driver (by kind) is polled."""
    return CompositeEventSource(
        [
            LibvirtEventMonitor(config.libvirt_uri) if kind == "libvirt" else PollingEventSource(driver)
            for kind, driver in drivers.items()
        ]
    )

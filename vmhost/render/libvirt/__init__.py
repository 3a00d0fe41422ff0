"""Render a VMSpec as a libvirt domain XML document: pure, deterministic, no host access.

Each module builds one concern (identity, cpu, memory, os, devices...); this module only puts the parts in
the order libvirt itself writes them, so `virsh dumpxml` and our output are easy to compare.
"""

from lxml import etree

from vmhost.render.cloudinit import seed_cdrom
from vmhost.render.libvirt.cdrom import cdrom_element
from vmhost.render.libvirt.channel import guest_agent_channel
from vmhost.render.libvirt.console import console_elements
from vmhost.render.libvirt.context import RenderContext
from vmhost.render.libvirt.controllers import controller_elements, scsi_layout
from vmhost.render.libvirt.cpu import cpu_element, cputune_element, vcpu_element
from vmhost.render.libvirt.disk import disk_element
from vmhost.render.libvirt.graphics import graphics_elements
from vmhost.render.libvirt.hooks import RenderHook, apply_hooks
from vmhost.render.libvirt.identity import identity_elements, metadata_element, read_metadata, sysinfo_element
from vmhost.render.libvirt.iothreads import iothread_elements, with_iothread_pins
from vmhost.render.libvirt.memory import balloon_element, memory_elements
from vmhost.render.libvirt.nic import nic_element
from vmhost.render.libvirt.os import clock_element, features_element, lifecycle_elements, os_element, pm_element
from vmhost.render.libvirt.passthrough import pci_hostdev, usb_hostdev
from vmhost.render.libvirt.schema import validate_domain_xml
from vmhost.spec import VMSpec

__all__ = ["RenderContext", "RenderHook", "domain_xml", "read_metadata", "render_domain", "validate_domain_xml"]

DOMAIN_TYPE = {"kvm": "kvm", "tcg": "qemu"}


def render_domain(spec: VMSpec, ctx: RenderContext) -> etree._Element:
    """The <domain> element for a spec that went through parse_spec(); raises ValueError if ctx is incomplete."""
    accel = spec.accel or ctx.accel
    domain = etree.Element("domain", type=DOMAIN_TYPE[accel])
    parts = [
        *identity_elements(spec),
        metadata_element(spec, ctx),
        *memory_elements(spec),
        vcpu_element(spec),
        *iothread_elements(spec),
        with_iothread_pins(cputune_element(spec), spec),
        sysinfo_element(spec),
        os_element(spec),
        features_element(spec, accel),
        cpu_element(spec, accel),
        clock_element(spec),
        *lifecycle_elements(spec),
        pm_element(spec),
        devices_element(spec, ctx),
    ]
    domain.extend(part for part in parts if part is not None)
    apply_hooks(spec, domain, ctx.hooks)
    return domain


def devices_element(spec: VMSpec, ctx: RenderContext) -> etree._Element:
    accel = spec.accel or ctx.accel
    seed = seed_cdrom(spec, ctx.seed_iso) if ctx.seed_iso is not None else None
    layout = scsi_layout(spec, seed)
    devices = etree.Element("devices")
    devices.extend(disk_element(disk, ctx, layout) for disk in spec.disks)
    devices.extend(cdrom_element(cdrom, layout) for cdrom in spec.cdroms)
    if seed is not None:
        devices.append(cdrom_element(seed, layout))
    devices.extend(controller_elements(spec, layout))
    devices.extend(nic_element(nic, accel) for nic in spec.nics)
    devices.extend(console_elements(spec, ctx))
    if spec.guest_agent:
        devices.append(guest_agent_channel())
    devices.extend(graphics_elements(spec))
    devices.extend(pci_hostdev(device) for device in spec.passthrough.pci)
    devices.extend(usb_hostdev(device) for device in spec.passthrough.usb)
    devices.append(balloon_element(spec))
    return devices


def domain_xml(spec: VMSpec, ctx: RenderContext) -> str:
    """Pretty-printed and byte-for-byte stable, so a changed document always means a changed VM."""
    return etree.tostring(render_domain(spec, ctx), pretty_print=True, encoding="unicode")

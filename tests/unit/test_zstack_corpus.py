"""The StartVmCmd corpus (tests/unit/zstack_bodies/start_vm_corpus.py): every body converts and renders a domain
libvirt's schema accepts whose checked fields match the body as ZStack's own agent reads it, or is refused with
the ZStack field named.

The checks read the body the way kvmagent's vm_plugin.py does (which field means what, which value means "unset"),
and the rendered domain the way libvirt does, so they hold whatever spec shape vmhost uses in between.

Then the field table (vmhost/dialects/zstack/fields.py, docs/zstack-fields.md): every field the corpus sends is in
it, and it is checked against the converter: an ignored field changes nothing, a mapped one changes the result,
a refused one is refused by name, a gap is still dropped.
"""

import copy
import functools
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import pytest
from lxml import etree
from pydantic import BaseModel

from tests.unit.strategies import context_for
from tests.unit.zstack_bodies.start_vm_corpus import CASES, DATA, VM, Case, data_volume, mn_body
from vmhost.api.zstack.day_two import PATHS as DAY_TWO_PATHS
from vmhost.api.zstack.routes import ASYNC_PATHS, ECHO_PATH, SYNC_PATHS
from vmhost.dialects.zstack import Unmappable, data_volume_disk, fields, start_vm_spec
from vmhost.dialects.zstack.devices import ceph_key
from vmhost.render.libvirt import domain_xml, render_domain, validate_domain_xml
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.vm import VMSpec

KIB = 1024
DOCS = Path(__file__).parents[2] / "docs"
VHOST_USER_NIC_TYPES = ("vDPA", "dpdkvhostuserclient")
VOLUME_QOS = {
    "readBandwidth": "read_bytes_sec",
    "writeBandwidth": "write_bytes_sec",
    "totalBandwidth": "total_bytes_sec",
    "readIOPS": "read_iops_sec",
    "writeIOPS": "write_iops_sec",
    "totalIOPS": "total_iops_sec",
}
"""header/volume/VolumeQos.java's keys and the <iotune> element Vm.set_volume_qos writes for each."""

KNOWN_FAILING: dict[str, str] = {}
"""Corpus bodies vmhost still gets wrong, with why; strict, so a mark goes as soon as its body passes."""

Body = Mapping[str, Any]
Check = Callable[[Body, etree._Element], Iterator[str]]


# ---- reading ZStack values as the agent does ----------------------------------------------------------------------


def flag(value: object) -> bool:
    """jsonobject truthiness, plus the "true"/"false" strings older management nodes send."""
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def is_set(value: object) -> TypeGuard[int]:
    """ZStack's "no value": null, 0 or -1."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def addons(body: Body) -> Mapping[str, Any]:
    return body.get("addons") or {}


def by_device_id(items: list[Any] | None) -> list[Any]:
    return sorted(items or [], key=lambda item: item.get("deviceId") or 0)


def volumes(body: Body) -> list[Mapping[str, Any]]:
    return [body["rootVolume"], *by_device_id(body.get("dataVolumes"))]


def hotplug_vcpus(body: Body) -> int:
    """useNuma asks for a vCPU ceiling of maxVcpuNum (KVMHost.setStartVmCpuTopology, vm_plugin make_cpu)."""
    ceiling, vcpus = body.get("maxVcpuNum"), int(body["cpuNum"])
    if flag(body.get("useNuma")) and isinstance(ceiling, int) and ceiling > vcpus:
        return ceiling
    return vcpus


def legacy_bus(body: Body) -> str:
    return "sata" if "q35" in str(body.get("machineType") or "") else "ide"


def text(node: etree._Element | None) -> str | None:
    return None if node is None else (node.text or "").strip()


def attr(parent: etree._Element, path: str, name: str) -> str | None:
    """An attribute of the first element at `path` under `parent`; None when either is missing."""
    node = parent.find(path)
    return None if node is None else node.get(name)


def pci_address(node: etree._Element | None) -> tuple[int, ...] | None:
    """domain, bus, slot, function of a libvirt <address> (hex or decimal, as libvirt takes them)."""
    if node is None:
        return None
    return tuple(int(node.get(key, "-1"), 0) for key in ("domain", "bus", "slot", "function"))


def host_pci_address(address: str) -> tuple[int, ...]:
    """'[dddd:]bb:ss.f' as ZStack writes host PCI addresses (hex fields; the domain may be left out)."""
    *head, slot_function = address.split(":")
    domain, bus = head if len(head) == 2 else ("0", head[0])
    slot, function = slot_function.split(".")
    return tuple(int(value, 16) for value in (domain, bus, slot, function))


# ---- checks: each yields the mismatches it finds ------------------------------------------------------------------


def check_vcpus(body: Body, domain: etree._Element) -> Iterator[str]:
    vcpu = domain.find("vcpu")
    assert vcpu is not None
    maximum = int(text(vcpu) or 0)
    current = int(vcpu.get("current", maximum))
    if current != body["cpuNum"]:
        yield f"vcpu current {current}, body cpuNum {body['cpuNum']}"
    if maximum != hotplug_vcpus(body):
        yield f"vcpu ceiling {maximum}, expected {hotplug_vcpus(body)} (useNuma/maxVcpuNum)"


def check_topology(body: Body, domain: etree._Element) -> Iterator[str]:
    """ZStack's agent writes socketNum/cpuOnSocket/threadsPerCore as given; without them any topology vmhost
    picks must hold the vCPU ceiling."""
    topology = domain.find("cpu/topology")
    found = None if topology is None else tuple(int(topology.get(k, "0")) for k in ("sockets", "cores", "threads"))
    if body.get("socketNum"):
        wanted = (body["socketNum"], body["cpuOnSocket"], body.get("threadsPerCore") or 1)
        if found != wanted:
            yield f"topology {found}, body asks sockets x cores x threads {wanted}"
    elif found is not None and found[0] * found[1] * found[2] != hotplug_vcpus(body):
        yield f"topology {found} does not hold {hotplug_vcpus(body)} vCPUs"


def check_memory(body: Body, domain: etree._Element) -> Iterator[str]:
    """memory is bytes; with useNuma, maxMemory (the host's total) is the hotplug ceiling, rounded as vmhost must."""
    size = int(text(domain.find("memory")) or 0) * KIB
    current = int(text(domain.find("currentMemory")) or 0) * KIB
    if size != body["memory"] or current != body["memory"]:
        yield f"memory {size} / currentMemory {current}, body memory {body['memory']}"
    ceiling = domain.find("maxMemory")
    hotplug = flag(body.get("useNuma")) and is_set(body.get("maxMemory")) and body["maxMemory"] > body["memory"]
    if hotplug and ceiling is None:
        yield "useNuma with maxMemory above memory, but no <maxMemory>"
    if hotplug and ceiling is not None and not body["memory"] < int(text(ceiling) or 0) * KIB <= body["maxMemory"]:
        yield f"maxMemory {text(ceiling)} KiB is not above memory and within body maxMemory {body['maxMemory']}"
    if not hotplug and ceiling is not None:
        yield "a <maxMemory> although the body asks for no memory hotplug"


def check_cpu_mode(body: Body, domain: etree._Element) -> Iterator[str]:
    """vm_plugin make_cpu: none → a bare <cpu> (the hypervisor's default model), host-model/host-passthrough as
    named, custom → the vmCpuModel."""
    nested = body.get("nestedVirtualization") or "none"
    cpu = domain.find("cpu")
    mode = None if cpu is None else cpu.get("mode")
    model = None if cpu is None else text(cpu.find("model"))
    if nested == "none" and (mode not in (None, "custom") or model):
        yield f"nestedVirtualization none, but cpu mode {mode!r} model {model!r} (ZStack writes a bare <cpu>)"
    if nested in ("host-model", "host-passthrough") and mode != nested:
        yield f"nestedVirtualization {nested}, cpu mode {mode!r}"
    if nested == "custom" and (mode not in (None, "custom") or model != body.get("vmCpuModel")):
        yield f"custom cpu {body.get('vmCpuModel')!r}, got mode {mode!r} model {model!r}"
    x2apic_off = cpu is not None and cpu.find("feature[@name='x2apic'][@policy='disable']") is not None
    if nested != "none" and body.get("x2apic") is False and not x2apic_off:
        yield "x2apic false, but no disabled x2apic feature"


def disk_kind(volume: Mapping[str, Any]) -> str:
    """vm_plugin file_volume_check: a file volume whose path is under /dev/ is a block device."""
    device_type = volume.get("deviceType") or "file"
    if device_type == "file" and str(volume["installPath"]).startswith("/dev/"):
        return "block"
    return device_type


def check_disk_source(volume: Mapping[str, Any], disk: etree._Element, where: str) -> Iterator[str]:
    kind, source, path = disk_kind(volume), disk.find("source"), volume["installPath"]
    assert source is not None
    if kind == "file" and (disk.get("type"), source.get("file")) != ("file", path):
        yield f"{where}: a file disk at {path}, got type {disk.get('type')} source {dict(source.items())}"
    if kind == "block" and (disk.get("type"), source.get("dev")) != ("block", path):
        yield f"{where}: a block disk at {path}, got type {disk.get('type')} source {dict(source.items())}"
    if kind == "ceph":
        yield from check_rbd_source(volume, disk, where)
    if kind == "iscsi":
        portal, target, lun = path.removeprefix("iscsi://").split("/")
        found = (
            source.get("protocol"),
            source.get("name"),
            f"{attr(source, 'host', 'name')}:{attr(source, 'host', 'port')}",
        )
        if found != ("iscsi", f"{target}/{lun}", portal):
            yield f"{where}: iscsi {portal} {target} lun {lun}, got {found}"


def check_rbd_source(item: Mapping[str, Any], disk: etree._Element, where: str) -> Iterator[str]:
    """ceph://pool/image with its monitors (monInfo) and the cephx secret (secretUuid)."""
    source = disk.find("source")
    assert source is not None
    name = str(item.get("installPath") or item.get("path")).removeprefix("ceph://")
    if (disk.get("type"), source.get("protocol"), source.get("name")) != ("network", "rbd", name):
        yield f"{where}: rbd {name}, got type {disk.get('type')} source {dict(source.items())}"
    hosts = [(h.get("name"), int(h.get("port", "6789"))) for h in source.findall("host")]
    if hosts != [(m["hostname"], m["port"]) for m in item.get("monInfo") or []]:
        yield f"{where}: monitors {hosts}, body monInfo {item.get('monInfo')}"
    secret = disk.find(".//auth/secret")
    if item.get("secretUuid") and (secret is None or secret.get("uuid") != item["secretUuid"]):
        yield f"{where}: cephx secret {item['secretUuid']} missing"


def expected_bus(body: Body, volume: Mapping[str, Any]) -> str:
    if flag(volume.get("useVirtioSCSI")):
        return "scsi"
    return "virtio" if flag(volume.get("useVirtio")) else legacy_bus(body)


def check_disks(body: Body, domain: etree._Element) -> Iterator[str]:
    disks = domain.findall("devices/disk[@device='disk']")
    wanted = volumes(body)
    if len(disks) != len(wanted):
        yield f"{len(disks)} disks, body has {len(wanted)} volumes"
        return
    qos = addons(body).get("VolumeQos") or {}
    for volume, disk in zip(wanted, disks, strict=True):
        where = f"volume {volume['volumeUuid']}"
        yield from check_disk_source(volume, disk, where)
        driver, target = disk.find("driver"), disk.find("target")
        assert driver is not None and target is not None
        fmt = "raw" if disk_kind(volume) in ("ceph", "iscsi") else volume.get("format")
        if fmt and driver.get("type") != fmt:
            yield f"{where}: format {fmt}, driver type {driver.get('type')}"
        if target.get("bus") != expected_bus(body, volume):
            yield f"{where}: bus {expected_bus(body, volume)}, target bus {target.get('bus')}"
        if volume.get("cacheMode") and driver.get("cache") != volume["cacheMode"]:
            yield f"{where}: cacheMode {volume['cacheMode']}, driver cache {driver.get('cache')}"
        if flag(volume.get("shareable")) != (disk.find("shareable") is not None):
            yield f"{where}: shareable {volume.get('shareable')}"
        if target.get("bus") == "scsi" and volume.get("wwn") and text(disk.find("wwn")) != volume["wwn"]:
            yield f"{where}: virtio-scsi wwn {volume['wwn']}, got {text(disk.find('wwn'))}"
        limits = {VOLUME_QOS[k]: v for k, v in (qos.get(volume["volumeUuid"]) or {}).items() if is_set(v)}
        iotune = {child.tag: int(text(child) or 0) for child in disk.findall("iotune/*")}
        if iotune != limits:
            yield f"{where}: VolumeQos {limits}, iotune {iotune}"
        yield from check_volume_iothread(volume, disk, domain, where)
        block_size = volume.get("physicalBlockSize")
        rendered_size = attr(disk, "blockio", "physical_block_size")
        if disk_kind(volume) == "ceph" and is_set(block_size) and rendered_size != str(block_size):
            yield f"{where}: physicalBlockSize {block_size}, blockio {rendered_size}"
    root_order = body["rootVolume"].get("bootOrder")
    if is_set(root_order) and attr(disks[0], "boot", "order") != str(root_order):
        yield f"root volume bootOrder {root_order} not rendered"


def check_volume_iothread(
    volume: Mapping[str, Any], disk: etree._Element, domain: etree._Element, where: str
) -> Iterator[str]:
    """vm_plugin: a virtio volume's iothread is on its <driver>; a virtio-scsi volume's on its own controller
    (index controllerIndex), which the disk's address names."""
    thread = volume.get("ioThreadId")
    if not is_set(thread):
        return
    if flag(volume.get("useVirtioSCSI")):
        index = str(volume.get("controllerIndex") or 0)
        controller = domain.find(f"devices/controller[@type='scsi'][@index='{index}']")
        driver = None if controller is None else controller.find("driver")
        address = disk.find("address")
        if driver is None or driver.get("iothread") != str(thread):
            yield f"{where}: scsi controller {index} with iothread {thread} missing"
        if address is None or address.get("controller") != index:
            yield f"{where}: disk not on scsi controller {index}"
    elif attr(disk, "driver", "iothread") != str(thread):
        yield f"{where}: ioThreadId {thread} not on the disk's driver"


def check_iothreads(body: Body, domain: etree._Element) -> Iterator[str]:
    count = addons(body).get("ioThreadNum")
    if not is_set(count):
        return
    if text(domain.find("iothreads")) != str(count):
        yield f"addons.ioThreadNum {count}, iothreads {text(domain.find('iothreads'))}"
    for pin in addons(body).get("ioThreadPins") or []:
        node = domain.find(f"cputune/iothreadpin[@iothread='{pin['ioThreadId']}']")
        if node is None or node.get("cpuset") != pin["pin"]:
            yield f"ioThreadPins: iothread {pin['ioThreadId']} not pinned to {pin['pin']}"


def check_cdroms(body: Body, domain: etree._Element) -> Iterator[str]:
    wanted = by_device_id(body.get("cdRoms"))
    if not wanted and isinstance(body.get("bootIso"), Mapping) and body["bootIso"].get("path"):
        wanted = [body["bootIso"]]
    drives = domain.findall("devices/disk[@device='cdrom']")
    if len(drives) != len(wanted):
        yield f"{len(drives)} CD-ROM drives, body has {len(wanted)}"
        return
    for index, (cdrom, drive) in enumerate(zip(wanted, drives, strict=True)):
        where, source = f"cdRoms.{index}", drive.find("source")
        empty = flag(cdrom.get("isEmpty")) or not cdrom.get("path")
        if empty and source is not None and (source.get("file") or source.get("name")):
            yield f"{where}: an empty tray, got {dict(source.items())}"
        elif not empty and str(cdrom["path"]).startswith("ceph://"):
            yield from check_rbd_source(cdrom, drive, where)
        elif not empty and (source is None or source.get("file") != cdrom["path"]):
            yield f"{where}: ISO {cdrom['path']}, got {None if source is None else dict(source.items())}"
        if is_set(cdrom.get("bootOrder")) and attr(drive, "boot", "order") != str(cdrom["bootOrder"]):
            yield f"{where}: bootOrder {cdrom['bootOrder']} not rendered"


def check_nics(body: Body, domain: etree._Element) -> Iterator[str]:
    nics = by_device_id(body.get("nics"))
    interfaces = domain.findall("devices/interface")
    if len(interfaces) != len(nics):
        yield f"{len(interfaces)} interfaces, body has {len(nics)} nics"
        return
    qos = addons(body).get("NicQos") or {}
    for nic, interface in zip(nics, interfaces, strict=True):
        where, mac = f"nic {nic['mac']}", interface.find("mac")
        if mac is None or mac.get("address") != nic["mac"]:
            yield f"{where}: mac {None if mac is None else mac.get('address')}"
        if nic.get("type") in VHOST_USER_NIC_TYPES:
            if interface.get("type") != "vhostuser":
                yield f"{where}: a {nic['type']} NIC must be vhost-user, got {interface.get('type')}"
        elif nic.get("pciDeviceAddress"):
            yield from check_vf_nic(nic, interface, where)
        elif nic.get("type") == "MACVLAN":
            found = (interface.get("type"), attr(interface, "source", "dev"), attr(interface, "source", "mode"))
            if found != ("direct", nic["physicalInterface"], "vepa"):
                yield f"{where}: a MACVLAN NIC on {nic['physicalInterface']} (vepa), got {found}"
        else:
            yield from check_bridge_nic(nic, interface, where)
        yield from check_nic_port(nic, interface, where)
        limits = qos.get(nic["uuid"]) or {}
        wanted = {
            d: limits[f"{d}Bandwidth"] // 8192 for d in ("inbound", "outbound") if is_set(limits.get(f"{d}Bandwidth"))
        }
        bandwidth = {d: int(a) for d in ("inbound", "outbound") if (a := attr(interface, f"bandwidth/{d}", "average"))}
        if bandwidth != wanted:
            yield f"{where}: NicQos {wanted} KiB/s, bandwidth {bandwidth}"


def check_nic_port(nic: Mapping[str, Any], interface: etree._Element, where: str) -> Iterator[str]:
    """state disable → link down; cleanTraffic → libvirt's clean-traffic filter with the last IPv4 address;
    isolated → an isolated bridge port (vm_plugin _build_interface_xml)."""
    if (nic.get("state") == "disable") != (attr(interface, "link", "state") == "down"):
        yield f"{where}: state {nic.get('state')!r}, link {attr(interface, 'link', 'state')!r}"
    if flag(nic.get("cleanTraffic")):
        ipv4 = [ip for ip in nic.get("ips") or [] if ":" not in ip]
        filterref = interface.find("filterref[@filter='clean-traffic']")
        ips = [] if filterref is None else [p.get("value") for p in filterref.findall("parameter[@name='IP']")]
        if filterref is None or ipv4[-1:] != ips[-1:]:
            yield f"{where}: cleanTraffic for {ipv4}, filter IPs {ips}"
    if flag(nic.get("isolated")) != (attr(interface, "port", "isolated") == "yes"):
        yield f"{where}: isolated {nic.get('isolated')}, port isolated {attr(interface, 'port', 'isolated')!r}"


def check_bridge_nic(nic: Mapping[str, Any], interface: etree._Element, where: str) -> Iterator[str]:
    model = nic.get("driverType") or ("virtio" if flag(nic.get("useVirtio")) else "e1000")
    found = {
        "type": interface.get("type"),
        "bridge": attr(interface, "source", "bridge"),
        "tap": attr(interface, "target", "dev"),
        "model": attr(interface, "model", "type"),
        "mtu": attr(interface, "mtu", "size"),
        "boot": attr(interface, "boot", "order"),
        "queues": attr(interface, "driver", "queues"),
    }
    queues = (nic.get("vHostAddOn") or {}).get("queueNum")
    wanted = {
        "type": "bridge",
        "bridge": nic["bridgeName"],
        "tap": nic.get("nicInternalName"),
        "model": model,
        "mtu": str(nic["mtu"]) if is_set(nic.get("mtu")) else None,
        "boot": str(nic["bootOrder"]) if is_set(nic.get("bootOrder")) else None,
        "queues": str(queues) if model == "virtio" and is_set(queues) and queues > 1 else None,
    }
    if found != wanted:
        yield f"{where}: wanted {wanted}, got {found}"


def check_vf_nic(nic: Mapping[str, Any], interface: etree._Element, where: str) -> Iterator[str]:
    """_build_interface_xml: pciDeviceAddress → <interface type='hostdev'> with the VF's PCI address."""
    found = pci_address(interface.find("source/address"))
    if interface.get("type") != "hostdev" or found != host_pci_address(nic["pciDeviceAddress"]):
        yield f"{where}: a VF at {nic['pciDeviceAddress']}, got type {interface.get('type')} address {found}"
    if nic.get("vlanId") and attr(interface, "vlan/tag", "id") != str(nic["vlanId"]):
        yield f"{where}: VF vlanId {nic['vlanId']}, vlan tag {attr(interface, 'vlan/tag', 'id')}"


def check_graphics(body: Body, domain: etree._Element) -> Iterator[str]:
    mode = body.get("consoleMode")
    graphics = domain.findall("devices/graphics")
    if not mode or addons(body).get("noConsole") is True:
        if graphics:
            yield "a console although the body asks for none"
        return
    wanted = ["vnc", "spice"] if mode == "vncAndSpice" else [mode]
    if [g.get("type") for g in graphics] != wanted:
        yield f"consoleMode {mode}, graphics {[g.get('type') for g in graphics]}"
        return
    if graphics[0].get("passwd") != body.get("consolePassword"):
        yield f"consolePassword {body.get('consolePassword')!r}, passwd {graphics[0].get('passwd')!r}"
    yield from check_video(body, domain)
    if "spice" in wanted:
        yield from check_spice(body, domain, graphics[-1])


def check_video(body: Body, domain: etree._Element) -> Iterator[str]:
    """make_video: one qxl adapter per VDI monitor (with qxlMemory's sizes), else one of videoType."""
    video = body.get("videoType")
    models = domain.findall("devices/video/model")
    if not video:
        return
    count = (body.get("VDIMonitorNumber") or 1) if video == "qxl" else 1
    if [m.get("type") for m in models] != [video] * count:
        yield f"videoType {video} x {count}, video models {[m.get('type') for m in models]}"
    sizes = body.get("qxlMemory")
    if video == "qxl" and sizes:
        for model in models:
            found = {k: model.get(k) for k in ("ram", "vram", "vgamem")}
            if found != {k: str(sizes[k]) for k in ("ram", "vram", "vgamem")}:
                yield f"qxlMemory {sizes}, qxl model {found}"


def check_spice(body: Body, domain: etree._Element, graphics: etree._Element) -> Iterator[str]:
    sound = [s.get("model") for s in domain.findall("devices/sound")]
    if sound != [body.get("soundType") or "ich6"]:
        yield f"soundType {body.get('soundType')!r} (default ich6), sound {sound}"
    streaming = graphics.find("streaming")
    if body.get("spiceStreamingMode") and (streaming is None or streaming.get("mode") != body["spiceStreamingMode"]):
        yield f"spiceStreamingMode {body['spiceStreamingMode']} not rendered"
    if flag(body.get("usbRedirect")) and not domain.findall("devices/redirdev[@type='spicevmc']"):
        yield "usbRedirect, but no spicevmc redirection devices"


def check_passthrough(body: Body, domain: etree._Element) -> Iterator[str]:
    usb: list[list[str]] = []
    redirect: list[list[str]] = []
    for entry in addons(body).get("usbDevice") or []:
        fields = entry.split(":")
        (usb if fields[5] == "PassThrough" else redirect).append(fields)
    found_usb = [
        (int(a.get("bus", "-1"), 0), int(a.get("device", "-1"), 0))
        for a in domain.findall("devices/hostdev[@type='usb']/source/address")
    ]
    if found_usb != [(int(f[0]), int(f[1])) for f in usb]:
        yield f"USB PassThrough {[f[:2] for f in usb]}, hostdevs {found_usb}"
    found_tcp = [(s.get("host"), s.get("service")) for s in domain.findall("devices/redirdev[@type='tcp']/source")]
    if found_tcp != [(f[7], f[6]) for f in redirect]:
        yield f"USB Redirect {[(f[7], f[6]) for f in redirect]}, tcp redirdevs {found_tcp}"
    wanted_pci = [host_pci_address(entry.split(",")[0]) for entry in addons(body).get("pciDevice") or []]
    found_pci = [pci_address(a) for a in domain.findall("devices/hostdev[@type='pci']/source/address")]
    if found_pci != wanted_pci:
        yield f"addons.pciDevice {wanted_pci}, PCI hostdevs {found_pci}"
    mdevs = [a.get("uuid", "").replace("-", "") for a in domain.findall("devices/hostdev[@type='mdev']/source/address")]
    if mdevs != list(addons(body).get("mdevDevice") or []):
        yield f"addons.mdevDevice {addons(body).get('mdevDevice')}, mdev hostdevs {mdevs}"


def check_platform(body: Body, domain: etree._Element) -> Iterator[str]:
    """Firmware, machine, boot menu, SMBIOS, clock and Hyper-V: make_os, make_sysinfo, make_meta, make_features."""
    os_node = domain.find("os")
    assert os_node is not None
    machine = attr(os_node, "type", "machine") or ""
    if body.get("machineType") == "q35" and "q35" not in machine:
        yield f"machineType q35, machine {machine}"
    uefi = os_node.get("firmware") == "efi" or os_node.find("loader") is not None
    if (body.get("bootMode") == "UEFI") != uefi:
        yield f"bootMode {body.get('bootMode')}, firmware {os_node.get('firmware')}"
    menu = os_node.find("bootmenu")
    if flag(body.get("useBootMenu")) != (menu is not None and menu.get("enable") == "yes"):
        yield f"useBootMenu {body.get('useBootMenu')}, bootmenu {None if menu is None else dict(menu.items())}"
    timeout = body.get("bootMenuSplashTimeout")
    if flag(body.get("useBootMenu")) and is_set(timeout) and (menu is None or menu.get("timeout") != str(timeout)):
        yield f"bootMenuSplashTimeout {timeout} not rendered"
    serial = text(domain.find("sysinfo/system/entry[@name='serial']"))
    if body.get("systemSerialNumber") and serial != body["systemSerialNumber"]:
        yield f"systemSerialNumber {body['systemSerialNumber']}, SMBIOS serial {serial}"
    asset = text(domain.find("sysinfo/chassis/entry[@name='asset']"))
    if body.get("systemSerialNumber") and body.get("chassisAssetTag") and asset != body["chassisAssetTag"]:
        yield f"chassisAssetTag {body['chassisAssetTag']}, SMBIOS chassis asset {asset}"
    offset = attr(domain, "clock", "offset")
    if offset != (body.get("clock") or "utc"):
        yield f"clock {body.get('clock')}, offset {offset}"
    hypervclock = domain.find("clock/timer[@name='hypervclock']")
    if body.get("clock") == "localtime" and flag(body.get("hypervClock")) and hypervclock is None:
        yield "hypervClock (localtime), but no hypervclock timer"
    rtc_track = attr(domain, "clock/timer[@name='rtc']", "track")
    if body.get("clock") == "localtime" and body.get("clockTrack") and rtc_track != body["clockTrack"]:
        yield f"clockTrack {body['clockTrack']}, rtc track {rtc_track}"
    if flag(body.get("vmPortOff")) and attr(domain, "features/vmport", "state") != "off":
        yield "vmPortOff, but the VMware port is not off"
    hyperv = domain.find("features/hyperv")
    if flag(body.get("emulateHyperV")) != (hyperv is not None):
        yield f"emulateHyperV {body.get('emulateHyperV')}, hyperv features {hyperv is not None}"
    vendor = None if hyperv is None else hyperv.find("vendor_id")
    if hyperv is not None and body.get("vendorId") and (vendor is None or vendor.get("value") != body["vendorId"]):
        yield f"vendorId {body['vendorId']!r} not the Hyper-V vendor id"
    if (domain.find("features/acpi") is not None) != flag(body.get("acpi", True)):
        yield f"acpi {body.get('acpi')}"


def check_memory_backing(body: Body, domain: etree._Element) -> Iterator[str]:
    access = domain.find("memoryBacking/access")
    if body.get("MemAccess") == "shared" and (access is None or access.get("mode") != "shared"):
        yield "MemAccess shared, but memory is not shared"
    if flag(body.get("useHugePage")) and domain.find("memoryBacking/hugepages") is None:
        yield "useHugePage, but no hugepages"


def check_guest_numa(body: Body, domain: etree._Element) -> Iterator[str]:
    """addons.numaNodes without useNuma: one guest cell per node (memorySize in bytes), its memory preferred on
    hostNodeID, and the node distances."""
    nodes = addons(body).get("numaNodes") or []
    if flag(body.get("useNuma")) or not nodes:
        return
    cells = [
        (
            c.get("id"),
            c.get("cpus"),
            int(c.get("memory", "0")) * KIB,
            [d.get("value") for d in c.findall("distances/sibling")],
        )
        for c in domain.findall("cpu/numa/cell")
    ]
    wanted = [(str(n["nodeID"]), n["cpus"], n["memorySize"], [str(d) for d in n["distance"]]) for n in nodes]
    if cells != wanted:
        yield f"addons.numaNodes {wanted}, guest cells {cells}"
    memnodes = [(m.get("cellid"), m.get("mode"), m.get("nodeset")) for m in domain.findall("numatune/memnode")]
    if memnodes != [(str(n["nodeID"]), "preferred", str(n["hostNodeID"])) for n in nodes]:
        yield f"addons.numaNodes host nodes, numatune {memnodes}"


def check_crash_handling(body: Body, domain: etree._Element) -> Iterator[str]:
    on_crash = addons(body).get("onCrash") or "preserve"  # make_meta's default
    if text(domain.find("on_crash")) != on_crash:
        yield f"addons.onCrash {on_crash}, on_crash {text(domain.find('on_crash'))}"
    panics = sorted(p.get("model", "") for p in domain.findall("devices/panic"))
    wanted = sorted(m for m, key in (("isa", "panicIsa"), ("hyperv", "panicHyperv")) if flag(addons(body).get(key)))
    if panics != wanted:
        yield f"panic devices {wanted}, got {panics}"
    pinning = addons(body).get("emulatorPinning")
    if pinning and attr(domain, "cputune/emulatorpin", "cpuset") != pinning:
        yield f"addons.emulatorPinning {pinning}, emulatorpin {attr(domain, 'cputune/emulatorpin', 'cpuset')}"


def check_guest_agent_and_shares(body: Body, domain: etree._Element) -> Iterator[str]:
    channel = domain.find("devices/channel/target[@name='org.qemu.guest_agent.0']")
    if bool(addons(body).get("channel")) != (channel is not None):
        yield f"addons.channel {addons(body).get('channel')}, guest agent channel {channel is not None}"
    shares = (body.get("priorityConfigStruct") or {}).get("cpuShares")
    if is_set(shares) and text(domain.find("cputune/shares")) != str(shares):
        yield f"priorityConfigStruct.cpuShares {shares}, cputune shares {text(domain.find('cputune/shares'))}"


CHECKS: list[Check] = [
    check_vcpus,
    check_topology,
    check_memory,
    check_cpu_mode,
    check_disks,
    check_iothreads,
    check_cdroms,
    check_nics,
    check_graphics,
    check_passthrough,
    check_platform,
    check_memory_backing,
    check_guest_numa,
    check_crash_handling,
    check_guest_agent_and_shares,
]


def mismatches(body: Body, domain: etree._Element) -> list[str]:
    return [problem for check in CHECKS for problem in check(body, domain)]


# ---- the corpus ---------------------------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> etree._Element:
    spec = parse_spec(document)
    domain = render_domain(spec, context_for(spec))
    errors = validate_domain_xml(domain)
    assert errors == [], "\n".join([*errors, domain_xml(spec, context_for(spec))])
    return domain


def refusal(body: Body) -> list[tuple[str, str]] | None:
    """The problems of a refused body (ZStack paths and messages), or None when it converts."""
    try:
        start_vm_spec(body)
    except SpecError as failure:
        return [(p.path, p.message) for p in failure.problems]
    return None


def corpus() -> list[Any]:
    return [
        pytest.param(case, id=case.name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[case.name]))
        if case.name in KNOWN_FAILING
        else pytest.param(case, id=case.name)
        for case in CASES
    ]


def table_name(problem_path: str) -> str:
    """A refusal's path (nics.0.type, addons.VolumeQos.<uuid>.totalIOPS) as the field table names it."""
    name = re.sub(r"\.\d+(?=\.|$)", "[]", problem_path)
    for keyed, placeholder in fields.KEYED_MAPS.items():
        name = re.sub(rf"^{re.escape(keyed)}\.[^.]+", f"{keyed}.{placeholder}", name)
    return name


@pytest.mark.parametrize("case", corpus())
def test_corpus_body(case: Case) -> None:
    problems = refusal(case.body)
    unnamed = [path for path, _ in problems or [] if not covering(fields.START_VM, table_name(path))]
    assert unnamed == [], "a refusal must name the ZStack field, not vmhost's"
    if case.refused:
        assert problems and any(path == case.refused for path, _ in problems), problems
        assert all(message for _, message in problems)
        return
    assert problems is None, problems
    domain = render(start_vm_spec(case.body))
    assert mismatches(case.body, domain) == []


def test_corpus_is_large_enough_and_names_its_sources() -> None:
    names = [case.name for case in CASES]
    assert len(names) >= 15
    assert len(set(names)) == len(names)
    assert all(case.source.startswith(("Z:", "U:")) for case in CASES)
    assert set(KNOWN_FAILING) <= set(names)


@pytest.mark.parametrize(
    "kind",
    ["file", "ceph", "iscsi", "block", "virtio-scsi", "qos", "spice", "vnc", "usb", "pci", "numa", "uefi", "q35"],
)
def test_corpus_covers_what_issue_16_lists(kind: str) -> None:
    def has(case: Case) -> bool:
        body, vols = case.body, volumes(case.body)
        return {
            "file": any(disk_kind(v) == "file" for v in vols),
            "ceph": any(disk_kind(v) == "ceph" for v in vols),
            "iscsi": any(disk_kind(v) == "iscsi" for v in vols),
            "block": any(disk_kind(v) == "block" for v in vols),
            "virtio-scsi": any(flag(v.get("useVirtioSCSI")) for v in vols),
            "qos": bool(addons(body).get("VolumeQos")),
            "spice": body.get("consoleMode") == "spice",
            "vnc": body.get("consoleMode") == "vnc",
            "usb": bool(addons(body).get("usbDevice")),
            "pci": bool(addons(body).get("pciDevice")),
            "numa": flag(body.get("useNuma")) and is_set(body.get("maxVcpuNum")),
            "uefi": body.get("bootMode") == "UEFI",
            "q35": body.get("machineType") == "q35",
        }[kind]

    assert any(has(case) for case in CASES)


# ---- the checks themselves can fail -------------------------------------------------------------------------------


def test_the_checks_catch_a_domain_that_differs_from_its_body() -> None:
    """A body that converts cleanly today, then a body that says something else: the checks must see it."""
    body = next(case.body for case in CASES if case.name == "vnc-virtio-video-no-console-password")
    domain = render(start_vm_spec(body))
    other = {**body, "cpuNum": 3, "memory": body["memory"] * 2, "videoType": "vga", "consolePassword": "x"}
    other["nics"] = [{**body["nics"][0], "mac": "fa:00:00:00:00:01", "mtu": 9000}]
    other["rootVolume"] = {**body["rootVolume"], "format": "raw", "useVirtio": False}
    found = "\n".join(mismatches(other, domain))
    for needle in ("cpuNum 3", "body memory", "videoType vga", "consolePassword", "fa:62:4a:61:6c:00", "format raw"):
        assert needle in found


# ---- what ZStack's agent writes into every domain ------------------------------------------------------------------


def converted_cases() -> list[tuple[Case, etree._Element]]:
    return [(case, render(start_vm_spec(case.body))) for case in CASES if refusal(case.body) is None]


def test_disks_carry_their_volume_uuid_as_serial() -> None:
    """Vm.set_volume_serial_id: every volume's serial is its uuid (the guest finds ZStack volumes by it), root and
    data volumes, on every kind of storage the corpus has."""
    checked = [
        (case.name, volume, disk)
        for case, domain in converted_cases()
        for volume, disk in zip(volumes(case.body), domain.findall("devices/disk[@device='disk']"), strict=True)
    ]
    found = [
        f"{name}: {volume['volumeUuid']} has serial {text(disk.find('serial'))}"
        for name, volume, disk in checked
        if text(disk.find("serial")) != volume["volumeUuid"]
    ]
    assert found == []
    assert {disk_kind(volume) for _, volume, _ in checked} >= {"file", "block", "ceph", "iscsi"}
    assert {volume.get("type") for _, volume, _ in checked} >= {"Root", "Data"}


def test_guests_with_a_console_get_zstacks_usb_tablet() -> None:
    """make_devices: every VM but an appliance VM gets a USB tablet, so the console's pointer is absolute."""
    found = [
        case.name
        for case, domain in converted_cases()
        if case.body.get("consoleMode")
        and not flag(case.body.get("isApplianceVm"))
        and domain.find("devices/input[@type='tablet'][@bus='usb']") is None
    ]
    assert found == []


def test_guest_suspend_states_follow_the_body() -> None:
    """make_pm: suspend-to-mem and suspend-to-disk are always written, enabled only when the body asks."""
    found = [
        f"{case.name}: {element} {attr(domain, f'pm/{element}', 'enabled')}, body {key} {case.body.get(key)}"
        for case, domain in converted_cases()
        for element, key in (("suspend-to-mem", "suspendToRam"), ("suspend-to-disk", "suspendToDisk"))
        if attr(domain, f"pm/{element}", "enabled") != ("yes" if flag(case.body.get(key)) else "no")
    ]
    assert found == []


# ---- the field table (vmhost/dialects/zstack/fields.py, docs/zstack-fields.md) --------------------------------------

Leaf = tuple[str, tuple[str | int, ...], Any]


def leaves(value: Any, name: str = "", where: tuple[str | int, ...] = ()) -> Iterator[Leaf]:
    """(table name, place in the body, value) of every field a body sends: objects by key, lists of objects by
    item (`[]`), maps keyed by a device uuid by their placeholder; anything else is a leaf."""
    if isinstance(value, Mapping) and value:
        placeholder = fields.KEYED_MAPS.get(name)
        for key, item in value.items():
            child = placeholder or key
            yield from leaves(item, f"{name}.{child}" if name else child, (*where, key))
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from leaves(item, f"{name}[]", (*where, index))
    else:
        yield name, where, value


def covering(table: fields.FieldTable, name: str) -> list[str]:
    """The table entries that cover a field: itself, an object listed whole above it, or (for a null or empty
    object) the fields listed inside it."""
    entries = {*table.mapped, *table.refused, *table.ignored, *table.gaps}
    if name in entries:
        return [name]
    above = [name[:i] for i, char in enumerate(name) if char in ".[" and name[:i] in entries]
    return above or [e for e in entries if e.startswith((f"{name}.", f"{name}[]"))]


def replaced(body: Body, where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(dict(body))
    node: Any = changed
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return changed


OTHER_VALUES = {"nics[].state": "disable"}
"""Fields whose meaning is one value of several (the generic change of other_value would mean nothing)."""


def other_value(value: object, name: str = "") -> object:
    """A different value of the same JSON type, far enough to move a deviceId past its neighbours."""
    if name in OTHER_VALUES:
        return OTHER_VALUES[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 + 100
    return f"{value}-changed"


def outcome(body: Body) -> object:
    """What a start makes of the body: the converted document and the Ceph key the handler sets (or the ZStack
    fields a refusal names)."""
    problems = refusal(body)
    if problems is not None:
        return ("refused", sorted(path for path, _ in problems))
    try:
        return start_vm_spec(body), ceph_key(body)
    except Unmappable as failure:
        return ("refused", [failure.path])


def scalar_leaves(kind: str) -> Iterator[tuple[Case, str, tuple[str | int, ...], Any]]:
    """Every non-null scalar field a converting corpus body sends that the StartVmCmd table lists as `kind`."""
    for case in CASES:
        if refusal(case.body) is not None:
            continue
        for name, where, value in leaves(case.body):
            scalar = value is not None and isinstance(value, bool | int | str)
            if scalar and fields.classification(fields.START_VM, name) == kind:
                yield case, name, where, value


def changes_outcome(case: Case, name: str, where: tuple[str | int, ...], value: Any) -> bool:
    return outcome(replaced(case.body, where, other_value(value, name))) != baseline(case.name)


@functools.cache
def baseline(name: str) -> object:
    return outcome(next(case.body for case in CASES if case.name == name))


def test_every_field_the_corpus_sends_is_in_the_table() -> None:
    sent = {name for case in CASES for name, _, _ in leaves(case.body)}
    assert sorted(name for name in sent if not covering(fields.START_VM, name)) == []
    assert covering(fields.START_VM, "addons.channel.socketPath") == ["addons.channel"]
    assert covering(fields.START_VM, "somethingNew") == []


def test_no_field_is_in_two_tables() -> None:
    table = fields.START_VM
    assert set(table.mapped) & set(table.refused) == set()
    assert set(table.mapped) & set(table.ignored) == set()
    assert set(table.refused) & set(table.ignored) == set()
    assert set(table.gaps) & {*table.mapped, *table.refused, *table.ignored} == set()
    assert set(fields.NOTES) <= {*table.mapped, *table.refused, *table.ignored}


def spec_field_exists(path: str) -> bool:
    """Whether a dotted spec path (with [] for list items) names a VMSpec field; below a free-form mapping
    (cpu.features) anything goes."""
    models: list[type[BaseModel]] = [VMSpec]
    for step in path.replace("[]", "").split("."):
        found = [m.model_fields[step] for m in models if step in m.model_fields]
        if not found:
            return False
        annotations = [f.annotation for f in found]
        if any(typing.get_origin(a) is dict for a in annotations):
            return True
        models = [m for a in annotations for m in spec_models(a)]
    return True


def spec_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in spec_models(arg)]


def test_mapped_fields_name_real_spec_fields() -> None:
    assert [(name, path) for name, path in fields.MAPPED.items() if not spec_field_exists(path)] == []
    assert not spec_field_exists("cpu.no_such_field")


def test_ignored_fields_change_nothing() -> None:
    """Every ignored field, set to another value in every body that sends it, leaves the conversion as it was."""
    leaves_ = scalar_leaves("ignored")
    changed = sorted(
        {f"{name} ({case.name})" for case, name, where, value in leaves_ if changes_outcome(case, name, where, value)}
    )
    assert changed == []


def test_mapped_fields_matter() -> None:
    """Every mapped field changes the conversion (or draws a refusal) in at least one body that sends it."""
    seen: dict[str, bool] = {}
    for case, name, where, value in scalar_leaves("mapped"):
        if not seen.get(name):
            seen[name] = changes_outcome(case, name, where, value)
    assert sorted(name for name, matters in seen.items() if not matters) == []


EXAMPLES: dict[str, Any] = {
    "rootVolume.chapUsername": "zstack",
    "rootVolume.chapPassword": "s3cret",
    "dataVolumes[].chapUsername": "zstack",
    "dataVolumes[].chapPassword": "s3cret",
    "coloPrimary": True,
    "coloSecondary": True,
    "useColoBinary": True,
    "memorySnapshotPath": "/local_ps/memorySnapshots/mem.snap",
    "createPaused": True,
    "cacheVolumes": [{"installPath": "/local_ps/cache/active.qcow2", "deviceId": 0}],
    "addons.vhostSrcPath": "/var/run/phynic1",
    "addons.mdevDevice": ["83b8f4f2509f382f3c1e6e0d2b1a0f9e"],
    "secureBoot": True,
    "vmCpuVendorId": "AuthenticAMD",
    "addons.userDefinedXml": "PGRvbWFpbiB0eXBlPSdrdm0nLz4=",
    "addons.userDefinedXmlHookScript": "IyEvYmluL3NoCg==",
    "addons.qemuCommandLine": ["-global", "kvm-pit.lost_tick_policy=discard"],
    "addons.qemuPath": "/usr/libexec/qemu-kvm",
    "addons.loaderRom": "/usr/share/zstack/loader.rom",
    "addons.storageDevice": [{"installPath": "/dev/sdb", "deviceId": 1}],
    "addons.numaNodes": [{"nodeID": 0, "cpus": "0-1", "memorySize": 4294967296, "hostNodeID": 0, "distance": [10]}],
    "addons.panicIsa": True,
    "addons.panicHyperv": True,
}
"""A value that sets each refused field and each gap, in example_body(field)."""


ISCSI_PATH = "iscsi://172.20.0.30:3260/iqn.2016-03.io.zstack:vol-5b0e8f6e/1"


def example_body(name: str) -> dict[str, Any]:
    """The management node's body with one data volume, both volumes on iSCSI for the CHAP fields (the only
    volumes ZStack's agent reads CHAP for)."""
    body = mn_body()
    body["dataVolumes"] = [data_volume(DATA, 1)]
    if "chap" in name:
        iscsi = {"deviceType": "iscsi", "installPath": ISCSI_PATH, "format": "raw"}
        body["rootVolume"] = {**body["rootVolume"], **iscsi}
        body["dataVolumes"] = [data_volume(DATA, 1, **iscsi)]
    return body


def where_of(name: str) -> tuple[str | int, ...]:
    return tuple(int(step) if step.isdigit() else step for step in name.replace("[]", ".0").split("."))


def test_every_refused_field_and_gap_has_an_example() -> None:
    assert set(EXAMPLES) == {*fields.REFUSED, *fields.GAPS}


@pytest.mark.parametrize("name", sorted(fields.REFUSED))
def test_refused_fields_are_refused_by_name(name: str) -> None:
    where = where_of(name)
    problems = refusal(replaced(example_body(name), where, EXAMPLES[name])) or []
    concrete = ".".join(str(step) for step in where)
    parent = concrete.rpartition(".")[0]
    assert any(path == concrete or (parent and path.startswith(f"{parent}.")) for path, _ in problems), problems


def test_gaps_are_still_dropped() -> None:
    """A gap that fails here is handled now: move it to MAPPED or REFUSED (and drop its KNOWN_FAILING mark)."""
    handled = [
        name
        for name in fields.GAPS
        if outcome(replaced(example_body(name), where_of(name), EXAMPLES[name])) != outcome(example_body(name))
    ]
    assert handled == []


def test_the_document_is_generated_from_the_table() -> None:
    """Regenerate with scripts/gen-zstack-fields."""
    assert (DOCS / "zstack-fields.md").read_text() == fields.markdown_table()


DAY_ONE_BODIES: dict[str, Body] = {
    "/host/connect": {
        "hostUuid": VM,
        "sendCommandUrl": "http://10.0.0.2:8080/zstack/asyncrest/sendcommand",
        "iptablesRules": [],
        "ignoreMsrs": True,
        "pageTableExtensionDisabled": False,
        "tcpServerPort": 7123,
        "version": "5.2.0",
    },
    "/host/ping": {"hostUuid": VM},
    "/vm/stop": {"uuid": VM, "type": "grace", "timeout": 60, "vmNics": [mn_body()["nics"][0]], "debug": False},
    "/vm/reboot": {"uuid": VM, "timeout": 60, "bootDev": ["hd"]},
    "/vm/destroy": {"uuid": VM, "vmNics": [mn_body()["nics"][0]]},
    "/vm/pause": {"uuid": VM, "timeout": 5},
    "/vm/resume": {"uuid": VM, "timeout": 5},
    "/vm/checkstate": {"vmUuids": [VM], "hostUuid": VM},
    "/vm/getvncport": {"vmUuid": VM},
    "/vm/attachdatavolume": {
        "vmInstanceUuid": VM,
        "volume": data_volume(DATA, 1),
        "addons": {"VolumeQos": {DATA: {"totalIOPS": 500, "readBandwidth": -1}}},
    },
    "/vm/detachdatavolume": {"vmInstanceUuid": VM, "volume": data_volume(DATA, 1)},
    "/vm/createcephsecret": {
        "uuid": "7c3a93e4-5a0b-4a51-9d4a-13b2d1c0f3a1",
        "userKey": "AQBx2xdkAAAAABAAl5yYVzPmMdJ3ROs/8n3O6g==",
    },
    "/vm/migrate": {
        "vmUuid": VM,
        "destHostIp": "172.20.0.12",
        "destHostManagementIp": "10.0.0.12",
        "storageMigrationPolicy": "IncCopy",
        "srcHostIp": "172.20.0.11",
        "useNuma": True,
        "migrateFromDestination": False,
        "autoConverge": False,
        "downTime": None,
        "xbzrle": True,
        "vdpaPaths": [],
        "nics": [mn_body()["nics"][0]],
        "disks": {},
        "reload": False,
        "bandwidth": 0,
        "timeout": 1800,
        "taskContext": {"__messagetimeout__": "1800000", "__messagedeadline__": "1767225600000"},
    },
}
"""KVMAgentCommands' fields of the other day-one commands (the bodies vm_utils' stop_vm, pause_vm ... send)."""


def table_of(path: str) -> fields.FieldTable:
    return next(table for table in fields.TABLES if path in table.path.split(", "))


@pytest.mark.parametrize("path", DAY_ONE_BODIES)
def test_every_field_of_the_other_commands_is_in_their_table(path: str) -> None:
    body = DAY_ONE_BODIES[path]
    assert sorted(name for name, _, _ in leaves(body) if not covering(table_of(path), name)) == []


def test_every_served_path_has_a_table() -> None:
    """The day-two paths have their own table, docs/zstack-day-two.md (tests/unit/test_zstack_day_two.py)."""
    served = {*ASYNC_PATHS, *SYNC_PATHS, ECHO_PATH}
    tabled = {path for table in fields.TABLES for path in table.path.split(", ")}
    day_two_doc = (DOCS / "zstack-day-two.md").read_text()
    assert served - tabled - set(DAY_TWO_PATHS) == set()
    assert [path for path in DAY_TWO_PATHS if path not in day_two_doc] == []


@pytest.mark.parametrize("table", fields.TABLES, ids=lambda table: table.command)
def test_no_field_of_a_command_is_listed_twice(table: fields.FieldTable) -> None:
    kinds = [table.mapped, table.refused, table.ignored, table.gaps]
    assert [name for i, a in enumerate(kinds) for b in kinds[i + 1 :] for name in set(a) & set(b)] == []


def test_attach_data_volume_table_matches_the_conversion() -> None:
    """As for StartVmCmd: an ignored field changes nothing, a mapped one changes the disk (or is refused) in at
    least one of a virtio and a virtio-scsi (own controller and IOThread) volume."""
    plain = DAY_ONE_BODIES["/vm/attachdatavolume"]
    scsi = {**plain, "volume": {**plain["volume"], "useVirtioSCSI": True, "ioThreadId": 1, "controllerIndex": 1}}
    table = table_of("/vm/attachdatavolume")

    def disk(candidate: Body) -> object:
        try:
            return data_volume_disk(candidate, "pc")
        except SpecError as failure:
            return ("refused", sorted(p.path for p in failure.problems))

    effects: dict[str, list[bool]] = {}
    for body in (plain, scsi):
        for name, where, value in leaves(body):
            if isinstance(value, bool | int | str) and name.startswith("volume."):
                effects.setdefault(name, []).append(disk(replaced(body, where, other_value(value))) != disk(body))
    assert sorted(n for n, changed in effects.items() if any(changed) and n in table.ignored) == []
    assert sorted(n for n, changed in effects.items() if not any(changed) and n in table.mapped) == []

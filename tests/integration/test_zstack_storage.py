"""The storage shapes ZStack bodies ask for, defined on the real libvirtd (never started): libvirt keeps the
IOThreads, their pins, the IOThread of each virtio disk and virtio-scsi controller, qcow2 on a block device and a
Ceph CD-ROM exactly as rendered."""

import contextlib
from collections.abc import Callable
from pathlib import Path

import libvirt
from lxml import etree

from tests.unit.test_zstack_convert import example
from vmhost.dialects.zstack import start_vm_spec
from vmhost.drivers.base import Resources
from vmhost.drivers.libvirt.driver import LibvirtDriver
from vmhost.spec import parse_spec

MONITORS = [{"hostname": "192.0.2.1", "port": 6789}]


def test_libvirt_accepts_and_keeps_iothreads_block_qcow2_and_a_ceph_iso(
    libvirt_conn: libvirt.virConnect, tmp_path: Path, vm_name: Callable[[str], str]
) -> None:
    cmd = example()
    cmd["vmName"] = vm_name("zs-storage")
    cmd["rootVolume"] = {**cmd["rootVolume"], "installPath": "/dev/vg-zs/root", "format": "qcow2", "ioThreadId": 1}
    cmd["dataVolumes"] = [
        {
            "installPath": "/dev/vg-zs/data",
            "deviceType": "file",
            "deviceId": 1,
            "volumeUuid": "6c46e4c236bf4c3e9d5a2b1c0d9e8f71",
            "useVirtio": False,
            "useVirtioSCSI": True,
            "format": "raw",
            "ioThreadId": 2,
            "controllerIndex": 1,
        }
    ]
    cmd["cdRoms"] = [{"path": "ceph://pool/iso", "deviceId": 0, "monInfo": MONITORS}]
    cmd["addons"] = {**cmd["addons"], "ioThreadNum": 2, "ioThreadPins": [{"ioThreadId": 2, "pin": "0"}]}
    spec = parse_spec(start_vm_spec(cmd))
    try:
        LibvirtDriver("qemu:///system", "tcg").define(spec, Resources(console_log=tmp_path / "console.log"))
        kept = etree.fromstring(libvirt_conn.lookupByName(spec.name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            libvirt_conn.lookupByName(spec.name).undefine()
    assert kept.findtext("iothreads") == "2"
    assert kept.find("cputune/iothreadpin").attrib == {"iothread": "2", "cpuset": "0"}
    root, data = kept.findall("devices/disk[@device='disk']")
    assert (root.get("type"), root.find("driver").get("type"), root.find("driver").get("iothread")) == (
        "block",
        "qcow2",
        "1",
    )
    assert data.find("address").get("controller") == "1"
    assert kept.find("devices/controller[@type='scsi'][@index='1']/driver").get("iothread") == "2"
    cdrom = kept.find("devices/disk[@device='cdrom']")
    assert (cdrom.get("type"), cdrom.find("source").get("name")) == ("network", "pool/iso")

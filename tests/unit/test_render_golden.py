"""Golden libvirt domain documents for representative specs.

Each case renders a spec and compares the result byte for byte with tests/unit/golden/<case>.xml. After an
intended change to the renderer, regenerate the files and review the diff:

    .venv/bin/pytest tests/unit/test_render_golden.py --regenerate-golden

Every golden document must also pass libvirt's RelaxNG schema, and (integration) be accepted by a real
libvirtd through `defineXML` with validation.
"""

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import Golden
from vmhost.render.libvirt import RenderContext, domain_xml, read_metadata, render_domain, validate_domain_xml
from vmhost.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden"
LOG = "/var/log/vmhost/console/{}.log"


def ctx(name: str, accel: str = "kvm", **kwargs: Any) -> dict[str, Any]:
    return {"accel": accel, "console_log": Path(LOG.format(name)), **kwargs}


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minimal": (
        {"name": "minimal", "uuid": "00000000-0000-4000-8000-000000000001", "memory": "512MiB"},
        ctx("minimal"),
    ),
    "kernel-boot": (
        {
            "name": "kernel-boot",
            "uuid": "00000000-0000-4000-8000-000000000002",
            "description": "boots a kernel straight from the host",
            "memory": "256MiB",
            "cpu": {"vcpus": 2},
            "boot": {
                "kernel": {
                    "kernel": "/srv/boot/vmlinuz",
                    "initrd": "/srv/boot/initrd.img",
                    "cmdline": "console=ttyS0 root=/dev/vda rw",
                },
                "machine": "q35",
            },
            "disks": [{"source": {"type": "file", "path": "/srv/images/root.raw", "format": "raw"}}],
            "guest_agent": False,
        },
        ctx("kernel-boot", accel="tcg"),
    ),
    "disks": (
        {
            "name": "disks",
            "uuid": "00000000-0000-4000-8000-000000000003",
            "memory": "1GiB",
            "disks": [
                {"source": {"type": "new", "size": "10GiB"}, "boot_order": 1, "cache": "none"},
                {"source": {"type": "new", "size": "1GiB", "format": "raw"}, "serial": "scratch-1"},
                {"source": {"type": "overlay", "base": "/srv/images/debian-12.qcow2"}, "bus": "virtio-scsi"},
                {
                    "source": {"type": "file", "path": "/srv/images/data.img"},
                    "bus": "virtio-scsi",
                    "wwn": "0x5000c50015ea71ac",
                    "io_limits": {"read_bytes_sec": 10485760, "write_bytes_sec": 5242880, "total_iops_sec": 500},
                },
                {"source": {"type": "file", "path": "/srv/images/legacy.vmdk", "format": "vmdk"}, "bus": "scsi"},
                {"source": {"type": "block", "path": "/dev/vg0/shared"}, "bus": "sata", "shareable": True},
                {"source": {"type": "file", "path": "/srv/images/old.qcow2", "format": "qcow2"}, "bus": "ide"},
                {
                    "source": {
                        "type": "iscsi",
                        "portal": "192.0.2.10",
                        "target": "iqn.2024-01.com.example:storage",
                        "lun": 3,
                        "auth": {"username": "chap-user", "secret_uuid": "6c1c2d4e-1b1a-4c6a-9a42-3b1f0e7a1b11"},
                    },
                    "cache": "writethrough",
                },
                {
                    "source": {
                        "type": "rbd",
                        "pool": "rbd",
                        "image": "vm-disk-1",
                        "monitors": ["mon1.example.com", "192.0.2.21:3300", "[2001:db8::5]:6790"],
                        "auth": {"username": "libvirt", "secret_uuid": "2f0c0a9e-9b0e-4b5e-8a39-0d1c7f7b9c22"},
                    },
                    "readonly": True,
                },
            ],
            "cdroms": [
                {"iso": "/srv/iso/debian-12.iso", "boot_order": 2},
                {"bus": "scsi"},
                {"bus": "ide"},
            ],
        },
        ctx(
            "disks",
            disk_paths={
                "vda": Path("/var/lib/vmhost/disks/vda.qcow2"),
                "vdb": Path("/var/lib/vmhost/disks/vdb.raw"),
                "sda": Path("/var/lib/vmhost/disks/sda.qcow2"),
            },
            disk_formats={"sdb": "raw"},
        ),
    ),
    "nics": (
        {
            "name": "nics",
            "uuid": "00000000-0000-4000-8000-000000000004",
            "memory": "512MiB",
            "nics": [
                {
                    "type": "bridge",
                    "source": "br0",
                    "mac": "52:54:00:00:00:01",
                    "tap": "vm-nics-0",
                    "mtu": 9000,
                    "queues": 4,
                    "bandwidth": {
                        "inbound": {"average_kib_s": 1000, "peak_kib_s": 5000, "burst_kib": 1024},
                        "outbound": {"average_kib_s": 500},
                    },
                    "allowed_ips": ["192.0.2.50", "192.0.2.51"],
                    "boot_order": 1,
                },
                {
                    "type": "network",
                    "source": "default",
                    "mac": "52:54:00:00:00:02",
                    "model": "e1000",
                    "allowed_ips": ["198.51.100.7"],
                },
                {
                    "type": "direct",
                    "source": "eth0",
                    "mac": "52:54:00:00:00:03",
                    "direct_mode": "vepa",
                    "bandwidth": {"outbound": {"average_kib_s": 2000, "burst_kib": 256}},
                },
            ],
        },
        ctx("nics"),
    ),
    "vnc": (
        {
            "name": "vnc",
            "uuid": "00000000-0000-4000-8000-000000000005",
            "memory": "1GiB",
            "labels": {"team": "web", "env": "prod"},
            "graphics": {"type": "vnc", "listen": "0.0.0.0", "port": 5905, "password": "s3cret!", "video": "vga"},
            "usb": {"controller": "qemu-xhci"},
        },
        ctx("vnc"),
    ),
    "spice": (
        {
            "name": "spice",
            "uuid": "00000000-0000-4000-8000-000000000006",
            "memory": "2GiB",
            "graphics": {"type": "spice", "listen": "::1", "video": "qxl", "sound": True},
            "usb": {"controller": "ich9-ehci1", "redirection": 2},
        },
        ctx("spice"),
    ),
    "passthrough": (
        {
            "name": "passthrough",
            "uuid": "00000000-0000-4000-8000-000000000007",
            "memory": "4GiB",
            "passthrough": {
                "pci": [{"address": "0000:03:00.0"}, {"address": "04:00.1", "managed": False}],
                "usb": [{"vendor": "0x046d", "product": "0xc52b"}, {"bus": 2, "device": 5}],
            },
        },
        ctx("passthrough"),
    ),
    "numa": (
        {
            "name": "numa",
            "uuid": "00000000-0000-4000-8000-000000000008",
            "memory": {"size": "4GiB", "hugepages": True, "balloon_stats_period": 10},
            "cpu": {
                "vcpus": 4,
                "topology": {"sockets": 2, "cores": 2, "threads": 1},
                "mode": "host-passthrough",
                "shares": 2048,
                "pinning": [{"vcpu": 1, "host_cpus": "2-3"}, {"vcpu": 0, "host_cpus": "0,1"}],
            },
            "numa": [{"cpus": "0-1", "memory": "1GiB"}, {"cpus": "2-3", "memory": "3GiB"}],
        },
        ctx("numa"),
    ),
    "hotplug": (
        {
            "name": "hotplug",
            "uuid": "00000000-0000-4000-8000-000000000009",
            "memory": {"size": "1GiB", "max_size": "8GiB", "slots": 16},
            "cpu": {"vcpus": 2, "max_vcpus": 8, "topology": {"sockets": 1, "cores": 4, "threads": 2}},
            "boot": {"machine": "q35"},
        },
        ctx("hotplug"),
    ),
    "uefi": (
        {
            "name": "uefi",
            "uuid": "00000000-0000-4000-8000-00000000000a",
            "memory": "2GiB",
            "boot": {"firmware": "uefi", "machine": "q35", "order": ["cdrom", "hd", "network"], "menu": True},
            "disks": [{"source": {"type": "new", "size": "20GiB"}}],
            "cdroms": [{"iso": "/srv/iso/installer.iso"}],
            "console": {"log_file": "/srv/logs/uefi-console.log"},
        },
        ctx("uefi", disk_paths={"vda": Path("/var/lib/vmhost/disks/uefi-vda.qcow2")}),
    ),
    "backing-chain": (
        {
            "name": "backing-chain",
            "uuid": "00000000-0000-4000-8000-00000000000e",
            "memory": "512MiB",
            "disks": [
                {
                    "source": {
                        "type": "file",
                        "path": "/srv/images/web.qcow2",
                        "format": "qcow2",
                        "backing": [
                            {"path": "/srv/images/debian-12.qcow2", "format": "qcow2"},
                            {"type": "block", "path": "/dev/vg0/golden", "format": "raw"},
                        ],
                    }
                },
                {
                    "source": {
                        "type": "overlay",
                        "base": "/srv/images/debian-12.raw",
                        "backing": [{"path": "/srv/images/debian-12.raw", "format": "raw"}],
                    }
                },
                {"source": {"type": "file", "path": "/srv/images/alone.qcow2", "format": "qcow2", "backing": []}},
                {"source": {"type": "file", "path": "/srv/images/plain.img", "format": "raw"}},
            ],
        },
        ctx("backing-chain", disk_paths={"vdb": Path("/var/lib/vmhost/disks/backing-chain-vdb.qcow2")}),
    ),
    "hyperv": (
        {
            "name": "hyperv",
            "uuid": "00000000-0000-4000-8000-00000000000b",
            "memory": "4GiB",
            "cpu": {"vcpus": 2, "mode": "Skylake-Client"},
            "features": {"hyperv": True, "hide_kvm": True, "pae": False},
            "clock": {
                "offset": "localtime",
                "timers": [
                    {"name": "rtc", "tickpolicy": "catchup"},
                    {"name": "pit", "tickpolicy": "delay"},
                    {"name": "hpet", "present": False},
                    {"name": "hypervclock"},
                ],
            },
            "lifecycle": {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "coredump-restart"},
            "disks": [{"source": {"type": "file", "path": "/srv/images/win.qcow2", "format": "qcow2"}, "bus": "sata"}],
            "nics": [{"type": "network", "source": "default", "mac": "52:54:00:00:00:0b", "model": "e1000"}],
        },
        ctx("hyperv"),
    ),
    "tcg-custom-cpu": (
        {
            "name": "tcg-custom-cpu",
            "uuid": "00000000-0000-4000-8000-00000000000c",
            "memory": {"size": "512MiB", "balloon": False},
            "cpu": {"vcpus": 2, "mode": "qemu64", "topology": {"sockets": 1, "cores": 2, "threads": 1}},
            "features": {"hide_kvm": True},
            "nics": [{"type": "bridge", "source": "br0", "mac": "52:54:00:00:00:0c", "queues": 2}],
            "usb": {"controller": "none"},
        },
        ctx("tcg-custom-cpu", accel="tcg"),
    ),
    "vdi-platform": (
        {
            "name": "vdi-platform",
            "uuid": "00000000-0000-4000-8000-00000000000f",
            "memory": {"size": "1GiB", "access": "shared", "merge_pages": False},
            "cpu": {"vcpus": 2, "mode": "qemu64", "features": {"x2apic": "disable"}, "emulator_pinning": "0"},
            "boot": {"menu": True, "menu_timeout": 2500},
            "features": {
                "hyperv": True,
                "hyperv_synic": True,
                "hyperv_vendor_id": "vmhost",
                "vmport": False,
                "suspend_to_mem": False,
                "suspend_to_disk": False,
            },
            "clock": {
                "offset": "localtime",
                "timers": [{"name": "rtc", "tickpolicy": "catchup", "track": "guest"}, {"name": "hypervclock"}],
            },
            "lifecycle": {"on_crash": "preserve"},
            "smbios": {"serial": "VMH-0001", "chassis_asset_tag": "rack-1", "oem_strings": ["vmhost:test"]},
            "graphics": {
                "type": "spice",
                "video": "qxl",
                "monitors": 2,
                "qxl": {"ram_kib": 65536, "vram_kib": 65536, "vgamem_kib": 16384},
                "streaming": "filter",
                "sound": "ac97",
                "tablet": True,
            },
            "usb": {"redirection": 2},
        },
        ctx("vdi-platform", accel="tcg"),
    ),
    "sriov-vf": (
        {
            "name": "sriov-vf",
            "uuid": "00000000-0000-4000-8000-000000000010",
            "memory": "512MiB",
            "nics": [
                {"type": "hostdev", "source": "0000:3b:02.1", "mac": "52:54:00:00:00:10", "vlan": 200},
                {"type": "hostdev", "source": "3b:02.2", "mac": "52:54:00:00:00:11", "boot_order": 1},
            ],
        },
        ctx("sriov-vf", accel="tcg"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, golden: Golden) -> None:
    data, context = CASES[case]
    spec, render_ctx = parse_spec(dict(data)), RenderContext(**context)
    rendered = domain_xml(spec, render_ctx)
    path = GOLDEN / f"{case}.xml"
    golden(path, rendered)
    assert validate_domain_xml(render_domain(spec, render_ctx)) == []


@pytest.fixture(scope="module")
def libvirt_conn() -> Any:
    libvirt = pytest.importorskip("libvirt")
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.skip(f"qemu:///system is unreachable: {exc}")
    yield conn
    conn.close()


def _undefine_leftover(conn: Any, name: str) -> None:
    """A run killed between define and undefine leaves its rendertest- domain behind; it would block this one."""
    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        conn.lookupByName(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_libvirt_accepts_golden(case: str, libvirt_conn: Any) -> None:
    """libvirtd itself (schema plus its own post-parse checks) takes every golden document."""
    import libvirt

    domain = etree.fromstring((GOLDEN / f"{case}.xml").read_bytes())
    name = f"rendertest-{case}"
    domain.find("name").text = name  # type: ignore[union-attr]
    domain.find("uuid").text = str(uuid.uuid4())  # type: ignore[union-attr]
    _undefine_leftover(libvirt_conn, name)
    defined = libvirt_conn.defineXMLFlags(
        etree.tostring(domain, encoding="unicode"), libvirt.VIR_DOMAIN_DEFINE_VALIDATE
    )
    try:
        stored = defined.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert read_metadata(stored) == read_metadata(etree.tostring(domain, encoding="unicode"))
    finally:
        defined.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

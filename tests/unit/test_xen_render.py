"""xl.cfg rendering, checked by Xen's own parser: every rendered file goes through libxlutil (loaded with ctypes,
see tests/unit/xlutil.py) exactly as xl reads it, and what the parser reads back must equal the spec.

Goldens live in tests/unit/golden/xen/<case>.cfg; after an intended renderer change regenerate and review:

    .venv/bin/pytest tests/unit/test_xen_render.py --regenerate-golden
"""

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings

from tests.conftest import Golden
from tests.unit import xlutil
from tests.unit.strategies import context_for, spec_dicts
from vmhost.render.xen import XenContext, problems, render_xl_cfg
from vmhost.render.xen.values import XlList, XlNumber, XlString, serialize
from vmhost.spec import SpecError, VMSpec, parse_spec
from vmhost.spec.disk import BlockDisk, FileDisk, NewDisk, OverlayDisk
from vmhost.spec.units import MiB

GOLDEN = Path(__file__).parent / "golden" / "xen"
EXAMPLES = Path(__file__).parents[2] / "examples"
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATE_INTERVAL_USECS = 50_000
"""xl-network-configuration(5): the default rate interval is 50ms."""


@pytest.fixture(scope="module")
def xlu() -> xlutil.Libxlutil:
    """Missing library fails (not skips): CI installs it, and a silent skip would hide every check here."""
    try:
        return xlutil.load()
    except RuntimeError as exc:
        pytest.fail(str(exc))


def example(name: str, uuid: str, **changes: Any) -> dict[str, Any]:
    path = EXAMPLES / name
    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    return {**data, "uuid": uuid, **changes}


def _tiny_disk_for_xen() -> dict[str, Any]:
    """Example 02 without the disk serial and I/O limits, which xl cannot express (see test below)."""
    data = example("02-tiny-with-disk.json", "00000000-0000-4000-8000-0000000000b2")
    data["disks"] = [{k: v for k, v in disk.items() if k not in ("serial", "io_limits")} for disk in data["disks"]]
    return data


DISKS = "/var/lib/vmhost/vms/{}/disks/{}"
CASES: dict[str, tuple[dict[str, Any], XenContext]] = {
    "01-minimal": (example("01-minimal.json", "00000000-0000-4000-8000-0000000000b1"), XenContext()),
    "02-tiny-with-disk": (
        _tiny_disk_for_xen(),
        XenContext(disk_paths={"vda": Path(DISKS.format("b2", "vda.qcow2"))}),
    ),
    "hvm-full": (
        {
            "name": "hvm-full",
            "uuid": "00000000-0000-4000-8000-0000000000c1",
            "memory": {"size": "2GiB", "max_size": "4GiB", "slots": 2},
            "cpu": {
                "vcpus": 2,
                "max_vcpus": 4,
                "shares": 200,
                "pinning": [{"vcpu": 2, "host_cpus": "4-5"}, {"vcpu": 0, "host_cpus": "0,2"}],
            },
            "boot": {"order": ["cdrom", "hd", "network"]},
            "disks": [
                {"source": {"type": "new", "size": "10GiB"}},
                {"source": {"type": "overlay", "base": "/srv/images/debian-12.qcow2"}, "bus": "scsi"},
                {"source": {"type": "file", "path": '/srv/images/data, "v2".img'}, "readonly": True},
                {"source": {"type": "file", "path": "/srv/images/legacy.vhd", "format": "raw"}, "bus": "ide"},
                {"source": {"type": "block", "path": "/dev/vg0/scratch"}, "bus": "sata"},
            ],
            "cdroms": [{"iso": "/srv/iso/installer.iso", "bus": "ide"}, {"bus": "ide"}],
            "nics": [
                {
                    "type": "bridge",
                    "source": "xenbr0",
                    "mac": "00:16:3e:00:00:01",
                    "tap": "vif-web0",
                    "mtu": 9000,
                    "bandwidth": {"outbound": {"average_kib_s": 12800}},
                },
                {"type": "bridge", "source": "br1", "mac": "00:16:3e:00:00:02", "model": "e1000"},
            ],
            "graphics": {"type": "vnc", "listen": "0.0.0.0", "port": 5907, "password": 'pa"s\\w', "video": "vga"},
            "passthrough": {"pci": [{"address": "0000:03:00.0"}, {"address": "04:00.1", "managed": False}]},
            "clock": {"offset": "localtime"},
            "features": {"hyperv": True, "pae": False},
            "lifecycle": {"on_poweroff": "restart", "on_reboot": "restart", "on_crash": "preserve"},
        },
        XenContext(
            disk_paths={"vda": Path(DISKS.format("c1", "vda.qcow2")), "sda": Path(DISKS.format("c1", "sda.qcow2"))},
            disk_formats={"vdb": "qcow2"},
        ),
    ),
    "uefi-spice": (
        {
            "name": "uefi-spice",
            "uuid": "00000000-0000-4000-8000-0000000000c2",
            "memory": "4GiB",
            "boot": {"firmware": "uefi"},
            "disks": [
                {"source": {"type": "file", "path": "/srv/images/win.qcow2", "format": "qcow2"}, "boot_order": 2}
            ],
            "cdroms": [{"iso": "/srv/iso/win.iso", "boot_order": 1}],
            "nics": [{"type": "bridge", "source": "br0", "mac": "00:16:3e:00:00:03", "model": "rtl8139"}],
            "graphics": {"type": "spice", "port": 5930, "video": "qxl", "sound": True},
            "lifecycle": {"on_crash": "coredump-restart"},
        },
        XenContext(),
    ),
    "kernel-hvm": (
        {
            "name": "kernel-hvm",
            "uuid": "00000000-0000-4000-8000-0000000000c3",
            "memory": "512MiB",
            "boot": {"kernel": {"kernel": "/srv/boot/vmlinuz", "cmdline": "console=ttyS0 root=/dev/xvda"}},
            "disks": [{"source": {"type": "block", "path": "/dev/vg0/root"}}],
            "cdroms": [{"iso": "/srv/iso/tools.iso"}],
        },
        XenContext(),
    ),
    "headless-hvm": (
        {
            "name": "headless-hvm",
            "uuid": "00000000-0000-4000-8000-0000000000c4",
            "memory": "1GiB",
            "disks": [{"source": {"type": "new", "size": "8GiB", "format": "raw"}, "boot_order": 1}],
            "nics": [{"type": "bridge", "source": "br0", "mac": "00:16:3e:00:00:04", "boot_order": 2}],
            "features": {"acpi": False, "apic": False},
            "lifecycle": {"on_reboot": "destroy"},
        },
        XenContext(disk_paths={"vda": Path(DISKS.format("c4", "vda.raw"))}),
    ),
}


# ---- what the parser reads back ------------------------------------------------------------------


def expected_type(spec: VMSpec) -> str:
    emulated = spec.graphics or spec.cdroms or spec.passthrough.pci
    return "pvh" if spec.boot.kernel and not emulated else "hvm"


def expected_disk(spec: VMSpec, index: int, ctx: XenContext) -> tuple[str, str]:
    disk = spec.disks[index]
    source = disk.source
    if isinstance(source, NewDisk):
        return str(ctx.disk_paths[str(disk.target)]), source.format
    if isinstance(source, OverlayDisk):
        return str(ctx.disk_paths[str(disk.target)]), "qcow2"
    if isinstance(source, FileDisk):
        return str(source.path), ctx.disk_formats.get(str(disk.target), source.format)
    assert isinstance(source, BlockDisk)
    return str(source.path), "raw"


def xen_vdev(target: str | None) -> str:
    assert target
    return {"vd": "xvd"}.get(target[:2], target[:2]) + target[2:]


def assert_reads_back(config: xlutil.Config, spec: VMSpec, ctx: XenContext) -> None:
    hvm = expected_type(spec) == "hvm"
    assert config.string("name") == spec.name
    assert config.string("uuid") == str(spec.uuid)
    assert config.string("type") == expected_type(spec)
    assert config.long("memory") == spec.memory.size // MiB
    assert (config.long("maxmem") if config.has("maxmem") else None) == (
        spec.memory.max_size // MiB if spec.memory.max_size else None
    )
    assert config.long("vcpus") == spec.cpu.vcpus
    assert (config.long("maxvcpus") if config.has("maxvcpus") else None) == spec.cpu.max_vcpus
    affinity = config.strings("cpus") if config.has("cpus") else []
    assert {i: cpus for i, cpus in enumerate(affinity) if cpus != "all"} == {
        pin.vcpu: pin.host_cpus for pin in spec.cpu.pinning
    }
    assert (config.long("cpu_weight") if config.has("cpu_weight") else None) == (
        round(spec.cpu.shares * 2.56) if spec.cpu.shares else None
    )
    _assert_boot(config, spec, hvm)
    _assert_disks(config, spec, ctx)
    _assert_vifs(config, spec, hvm)
    assert [config.pci(item) for item in _list(config, "pci")] == [
        (device.address, device.managed) for device in spec.passthrough.pci
    ]
    _assert_display(config, spec, hvm)
    for action in ("on_poweroff", "on_reboot", "on_crash"):
        assert config.string(action) == getattr(spec.lifecycle, action)
    if hvm:
        features = spec.features
        assert [config.long(k) for k in ("acpi", "apic", "pae", "viridian")] == [
            features.acpi,
            features.apic,
            features.pae,
            features.hyperv,
        ]
    assert (config.long("localtime") if config.has("localtime") else 0) == (spec.clock.offset == "localtime")


def _list(config: xlutil.Config, key: str) -> list[str]:
    return config.strings(key) if config.has(key) else []


def _assert_boot(config: xlutil.Config, spec: VMSpec, hvm: bool) -> None:
    kernel = spec.boot.kernel
    assert (config.string("kernel") if config.has("kernel") else None) == (str(kernel.kernel) if kernel else None)
    assert (config.string("ramdisk") if config.has("ramdisk") else None) == (
        str(kernel.initrd) if kernel and kernel.initrd else None
    )
    assert (config.string("cmdline") if config.has("cmdline") else None) == (kernel.cmdline if kernel else None)
    if hvm:
        assert config.string("firmware") == spec.boot.firmware
        letters = {"hd": "c", "cdrom": "d", "network": "n"}
        devices = [(d.boot_order, "hd") for d in spec.disks] + [(c.boot_order, "cdrom") for c in spec.cdroms]
        devices += [(n.boot_order, "network") for n in spec.nics]
        classes = spec.boot.order or [kind for order, kind in sorted(d for d in devices if d[0] is not None)]
        order = "".join(dict.fromkeys(letters[kind] for kind in classes))
        assert (config.string("boot") if config.has("boot") else "") == order
    else:
        assert not config.has("firmware")


def _assert_disks(config: xlutil.Config, spec: VMSpec, ctx: XenContext) -> None:
    items = _list(config, "disk")
    assert len(items) == len(spec.disks) + len(spec.cdroms)
    for index, disk in enumerate(spec.disks):
        parsed = config.disk(items[index])
        target, fmt = expected_disk(spec, index, ctx)
        assert (parsed.target, parsed.format, parsed.vdev) == (target, fmt, xen_vdev(disk.target)), items[index]
        assert (parsed.readwrite, parsed.is_cdrom) == (not disk.readonly, False)
    for index, cdrom in enumerate(spec.cdroms):
        parsed = config.disk(items[len(spec.disks) + index])
        expected = (str(cdrom.iso), "raw") if cdrom.iso else (None, "empty")
        assert (parsed.target, parsed.format, parsed.vdev) == (*expected, cdrom.target)
        assert (parsed.readwrite, parsed.is_cdrom, parsed.removable) == (False, True, True)


def _assert_vifs(config: xlutil.Config, spec: VMSpec, hvm: bool) -> None:
    """xl parses vif items itself (parse_nic_config: comma-separated key=value); only rate= is libxlutil's."""
    items = _list(config, "vif")
    assert len(items) == len(spec.nics)
    models = {"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139"}
    for item, nic in zip(items, spec.nics, strict=True):
        pairs = dict(part.split("=", 1) for part in item.split(","))
        assert pairs.pop("mac") == nic.mac
        assert pairs.pop("bridge") == nic.source
        assert pairs.pop("model", None) == (models[nic.model] if hvm else None)
        assert pairs.pop("vifname", None) == nic.tap
        assert pairs.pop("mtu", None) == (str(nic.mtu) if nic.mtu else None)
        outbound = nic.bandwidth.outbound if nic.bandwidth else None
        rate = config.vif_rate(pairs.pop("rate")) if outbound else None
        assert rate == (
            (outbound.average_kib_s * 1024 * RATE_INTERVAL_USECS // 1_000_000, RATE_INTERVAL_USECS)
            if outbound
            else None
        )
        assert pairs == {}


def _assert_display(config: xlutil.Config, spec: VMSpec, hvm: bool) -> None:
    graphics = spec.graphics
    if not hvm:
        assert not any(config.has(k) for k in ("vnc", "spice", "serial", "vga", "nographic"))
        return
    assert config.string("serial") == "pty"
    assert config.long("vnc") == (graphics is not None and graphics.type == "vnc")
    assert (config.long("nographic") if config.has("nographic") else 0) == (graphics is None)
    if graphics is None:
        return
    password = graphics.password.get_secret_value() if graphics.password else None
    vga = {"vga": "stdvga", "cirrus": "cirrus", "qxl": "qxl"}
    assert (config.string("vga") if config.has("vga") else None) == (vga[graphics.video] if graphics.video else None)
    if graphics.type == "vnc":
        assert config.string("vnclisten") == str(graphics.listen)
        display = graphics.port - 5900 if graphics.port else None
        assert (config.long("vncdisplay") if config.has("vncdisplay") else None) == display
        assert (config.long("vncunused") if config.has("vncunused") else 0) == (graphics.port is None)
        assert (config.string("vncpasswd") if config.has("vncpasswd") else None) == password
    else:
        assert (config.long("spice"), config.string("spicehost")) == (1, str(graphics.listen))
        assert config.long("spiceport") == graphics.port
        assert (config.string("spicepasswd") if config.has("spicepasswd") else None) == password
        assert (config.long("spicedisable_ticketing") if config.has("spicedisable_ticketing") else 0) == (
            password is None
        )
        assert (config.string("soundhw") if config.has("soundhw") else None) == ("hda" if graphics.sound else None)


# ---- goldens -------------------------------------------------------------------------------------


def test_ctypes_structs_match_the_installed_headers(tmp_path: Path) -> None:
    """The libxl_device_* layouts xlutil.py declares are what gcc computes from /usr/include/_libxl_types.h."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to check the libxl struct layouts against the installed headers")
    assert xlutil.compile_layout_probe(tmp_path) == xlutil.ctypes_layout()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, xlu: xlutil.Libxlutil, golden: Golden) -> None:
    data, ctx = CASES[case]
    spec = parse_spec(copy.deepcopy(data))
    rendered = render_xl_cfg(spec, ctx)
    path = GOLDEN / f"{case}.cfg"
    golden(path, rendered)
    with xlu.config(rendered, f"{case}.cfg") as config:
        assert_reads_back(config, spec, ctx)
        assert config.report() == "", "libxlutil warned about the rendered file"


def test_example_02_needs_two_changes_for_xen() -> None:
    spec = parse_spec(example("02-tiny-with-disk.json", "00000000-0000-4000-8000-0000000000b2"))
    assert problems(spec) == [
        ("disks.0.io_limits", "io_limits is not supported on the xen driver"),
        ("disks.0.serial", "serial is not supported on the xen driver"),
    ]


def test_full_reference_example_names_everything_xl_cannot_express() -> None:
    spec = parse_spec(example("03-full-reference.yaml", "6f1c3f4e-2b9a-4c7d-9a51-0e6f2b8d4c11"))
    assert [path for path, _ in problems(spec)] == [
        "boot.machine",
        "clock.timers",
        "console.log_file",
        "disks.1.io_limits",
        "disks.1.serial",
        "disks.1.wwn",
        "disks.2.source",
        "disks.3.source",
        "graphics.port",
        "nics.0.allowed_ips",
        "nics.0.bandwidth.inbound",
        "nics.1.type",
        "numa",
        "passthrough.usb",
        "usb.redirection",
    ]
    with pytest.raises(ValueError, match=r"disks\.2\.source: iscsi disks are not supported"):
        render_xl_cfg(spec, XenContext())


def test_rendering_refuses_an_unresolved_auto_format() -> None:
    spec = parse_spec(
        {"name": "auto", "memory": "64MiB", "disks": [{"source": {"type": "file", "path": "/srv/a.img"}}]}
    )
    with pytest.raises(ValueError, match="format 'auto' was not resolved"):
        render_xl_cfg(spec, XenContext())
    with pytest.raises(ValueError, match="xl cannot use vmdk images"):
        render_xl_cfg(spec, XenContext(disk_formats={"vda": "vmdk"}))


# ---- the serializer against the parser -----------------------------------------------------------


def test_quotes_backslashes_and_newlines_survive_the_parser(xlu: xlutil.Libxlutil) -> None:
    tricky = 'a "quoted" \\ back\\slash\nnew line\ttab é'
    text = serialize({"name": XlString(tricky), "vcpus": XlNumber(0x10), "disk": XlList((XlString(tricky),))})
    with xlu.config(text) as config:
        assert config.string("name") == tricky
        assert config.long("vcpus") == 16
        assert config.strings("disk") == [tricky]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: XlNumber(-1), "non-negative"),
        (lambda: XlNumber(True), "non-negative"),
        (lambda: XlString("bell\x07"), "control character"),
        (lambda: serialize({"Name": XlString("x")}), "not an xl.cfg key"),
    ],
)
def test_serializer_refuses_what_xl_cannot_read(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_the_parser_really_refuses_those(xlu: xlutil.Libxlutil) -> None:
    """The facts the serializer's refusals rest on, asked of libxlutil itself."""
    for text in ("memory = -1\n", "Name = 1\n", "acpi = true\n", 'name = "\\x41"\n'):
        with pytest.raises(xlutil.ParseError), xlu.config(text):
            pass


# ---- every spec the xen driver accepts -----------------------------------------------------------


def xen_compatible(data: dict[str, Any]) -> dict[str, Any]:
    """A generated spec with the parts xl cannot express taken out, so the property below sees full specs."""
    data = copy.deepcopy(data)
    data.update(numa=[], console={})
    data["clock"]["timers"] = []
    data["passthrough"]["usb"] = []
    data["usb"]["redirection"] = 0
    data["cpu"].pop("features", None)
    data["cpu"].pop("emulator_pinning", None)
    if isinstance(data["memory"], dict):
        data["memory"]["access"] = "private"
    if data["boot"]["machine"] and "q35" in data["boot"]["machine"]:
        data["boot"]["machine"] = None
    if data["boot"].get("kernel"):
        data["boot"]["firmware"] = "bios"
    drop = ("io_limits", "serial", "wwn", "shareable")
    data["disks"] = [
        {k: v for k, v in disk.items() if k not in drop}
        for disk in data["disks"]
        if disk["source"]["type"] not in ("iscsi", "rbd")
    ]
    for disk in data["disks"]:
        if disk["source"].get("format") in ("vmdk", "vdi"):
            disk["source"]["format"] = "qcow2"
        if str(disk["source"].get("path", "")).endswith(","):
            disk["source"]["path"] += "x"  # xl's target= drops a trailing comma (a problem, tested below)
    for cdrom in data["cdroms"]:
        if str(cdrom.get("iso") or "").endswith(","):
            cdrom["iso"] += "x"
    for nic in data["nics"]:
        nic.update(type="bridge")
        for key in ("allowed_ips", "direct_mode"):
            nic.pop(key, None)
        outbound = (nic.get("bandwidth") or {}).get("outbound")
        nic["bandwidth"] = {"outbound": {"average_kib_s": outbound["average_kib_s"]}} if outbound else None
    graphics = data["graphics"]
    if graphics:
        if ":" in graphics.get("listen", ""):
            graphics["listen"] = "127.0.0.1"
        if graphics["type"] == "spice":
            graphics.setdefault("port", 5999)
        if graphics.get("video") in ("virtio", "bochs"):
            del graphics["video"]
        for key in ("streaming", "monitors", "qxl", "tablet"):
            graphics.pop(key, None)
        if isinstance(graphics.get("sound"), str):
            graphics["sound"] = True
    return data


def _accepted(data: dict[str, Any]) -> VMSpec:
    try:
        return parse_spec(data)
    except SpecError:
        reject()


@PROPERTY_SETTINGS
@given(data=spec_dicts())
def test_every_spec_without_problems_renders_and_reads_back(data: dict[str, Any], xlu: xlutil.Libxlutil) -> None:
    spec = _accepted(xen_compatible(data))
    assert problems(spec) == []
    libvirt_ctx = context_for(spec)
    ctx = XenContext(disk_paths=libvirt_ctx.disk_paths, disk_formats=libvirt_ctx.disk_formats)
    rendered = render_xl_cfg(spec, ctx)
    with xlu.config(rendered) as config:
        assert_reads_back(config, spec, ctx)


@PROPERTY_SETTINGS
@given(data=spec_dicts())
def test_a_spec_renders_exactly_when_it_has_no_problems(data: dict[str, Any]) -> None:
    spec = _accepted(data)
    libvirt_ctx = context_for(spec)
    ctx = XenContext(disk_paths=libvirt_ctx.disk_paths, disk_formats=libvirt_ctx.disk_formats)
    if problems(spec):
        with pytest.raises(ValueError):
            render_xl_cfg(spec, ctx)
    else:
        render_xl_cfg(spec, ctx)


def test_a_disk_or_iso_path_ending_in_a_comma_is_a_problem_xl_cannot_carry() -> None:
    """libxlu_disk_l.l: `target=.*` strips one trailing ',' from the path, so the guest would get another file."""
    spec = parse_spec(
        {
            "name": "comma",
            "memory": "64MiB",
            "disks": [{"source": {"type": "file", "path": "/srv/a,", "format": "raw"}}],
            "cdroms": [{"iso": "/srv/b.iso,"}],
        }
    )
    assert sorted(path for path, _ in problems(spec)) == ["cdroms.0.iso", "disks.0.source.path"]


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"smbios": {"serial": "S-1"}}, "smbios"),
        ({"cpu": {"mode": "host-model", "features": {"x2apic": "disable"}}}, "cpu.features"),
        ({"memory": {"size": "64MiB", "access": "shared"}}, "memory.access"),
        ({"features": {"hyperv": True, "hyperv_vendor_id": "vmhost"}}, "features.hyperv"),
        ({"graphics": {"type": "spice", "port": 5930, "streaming": "all"}}, "graphics.streaming"),
        ({"graphics": {"type": "spice", "port": 5930, "sound": "ac97"}}, "graphics.sound"),
        ({"graphics": {"type": "vnc", "video": "qxl", "monitors": 2}}, "graphics.monitors"),
        ({"cpu": {"emulator_pinning": "0"}}, "cpu.emulator_pinning"),
        ({"graphics": {"type": "vnc", "tablet": True}}, "graphics.tablet"),
        ({"features": {"suspend_to_mem": False}}, "features.suspend_to_mem"),
    ],
)
def test_platform_settings_xl_cannot_carry_are_problems_not_dropped(block: dict[str, Any], path: str) -> None:
    spec = parse_spec({"name": "platform", "memory": "64MiB", **block})
    assert path in [found for found, _ in problems(spec)]

"""Hypothesis strategies for VM spec *dicts* (what a user writes), covering most fields of vmhost.spec.

They aim to produce specs parse_spec() accepts, so that property tests spend their examples on the renderer.
A few combinations the spec accepts but libvirt cannot express are deliberately not generated; each is marked
"spec gap" below and was reported for the spec to reject.
"""

import string
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from vmhost.render.libvirt import RenderContext
from vmhost.spec import VMSpec
from vmhost.spec.vm import LABEL_KEY_PATTERN, NAME_PATTERN

Draw = st.DrawFn

# XML 1.0 cannot carry C0 controls or lone surrogates (spec gap: free text and paths accept them).
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=40)
_segment = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), exclude_characters="/"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
abs_paths = st.lists(_segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
dns_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True)
ports = st.integers(1, 65535)  # spec gap: host:port accepts 0 and 65536-99999


@st.composite
def host_ports(draw: Draw) -> str:
    """'host', 'host:port', bare IPv6 or '[IPv6]:port' (spec gap: 'a:b' and '[' also pass the spec's check)."""
    kind = draw(st.sampled_from(["dns", "ipv4", "ipv6", "ipv6-port"]))
    port = draw(st.none() | ports)
    suffix = "" if port is None else f":{port}"
    if kind == "dns":
        return draw(dns_names) + suffix
    if kind == "ipv4":
        return str(draw(st.ip_addresses(v=4))) + suffix
    v6 = str(draw(st.ip_addresses(v=6)))
    return v6 if kind == "ipv6" else f"[{v6}]:{draw(ports)}"


def secret_refs() -> st.SearchStrategy[dict[str, Any]]:
    """Spec gap: usernames with '.' or '@' pass the spec but not the schema (genericName is [A-Za-z0-9_+-]+)."""
    return st.fixed_dictionaries(
        {"username": st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True), "secret_uuid": st.uuids().map(str)}
    )


def disk_sources() -> st.SearchStrategy[dict[str, Any]]:
    sizes = st.integers(1, 4096).map(lambda mib: f"{mib}MiB")
    ceph_names = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("new"), "size": sizes}, optional={"format": st.sampled_from(["qcow2", "raw"])}
        ),
        st.fixed_dictionaries({"type": st.just("overlay"), "base": abs_paths}, optional={"size": sizes}),
        st.fixed_dictionaries(
            {"type": st.just("file"), "path": abs_paths},
            optional={"format": st.sampled_from(["auto", "qcow2", "raw", "vmdk", "vdi", "qed"])},  # spec gap: vhdx
        ),
        st.fixed_dictionaries({"type": st.just("block"), "path": abs_paths}),
        st.fixed_dictionaries(
            {
                "type": st.just("iscsi"),
                "portal": host_ports(),
                "target": st.from_regex(
                    r"iqn\.20[0-9]{2}-(0[1-9]|1[0-2])\.[a-z]{2,8}\.[a-z]{2,8}(:[a-z0-9.-]{1,12})?", fullmatch=True
                ),
            },
            optional={"lun": st.integers(0, 16383), "auth": secret_refs()},
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("rbd"),
                "pool": ceph_names,
                "image": ceph_names,
                "monitors": st.lists(host_ports(), min_size=1, max_size=3),
            },
            optional={"auth": secret_refs()},
        ),
    )


@st.composite
def io_limits(draw: Draw) -> dict[str, int]:
    """A total limit and read/write limits of the same kind exclude each other."""
    limits: dict[str, int] = {}
    for kind in ("bytes_sec", "iops_sec"):
        choice = draw(st.sampled_from(["none", "total", "split"]))
        names = {"none": [], "total": ["total"], "split": ["read", "write"]}[choice]
        limits.update({f"{name}_{kind}": draw(st.integers(1, 10**9)) for name in names})
    return limits


@st.composite
def disks(draw: Draw, q35: bool) -> dict[str, Any]:
    buses = ["virtio", "virtio-scsi", "scsi", "sata"] + ([] if q35 else ["ide"])
    bus = draw(st.sampled_from(buses))
    disk: dict[str, Any] = {"source": draw(disk_sources()), "bus": bus}
    optional = {
        "cache": st.sampled_from(["default", "none", "writethrough", "writeback", "directsync", "unsafe"]),
        "readonly": st.booleans(),
        "shareable": st.booleans(),
        "serial": st.from_regex(r"[A-Za-z0-9_.+-]{1,20}", fullmatch=True),
        "io_limits": io_limits(),
    }
    if bus in ("scsi", "virtio-scsi", "ide"):
        optional["wwn"] = st.from_regex(r"(0x)?[0-9a-fA-F]{16}", fullmatch=True)
    disk.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return disk


@st.composite
def cdroms(draw: Draw, q35: bool) -> dict[str, Any]:
    buses = ["sata", "scsi"] + ([] if q35 else ["ide"])
    return draw(st.fixed_dictionaries({"bus": st.sampled_from(buses)}, optional={"iso": abs_paths}))


def rates() -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries(
        {"average_kib_s": st.integers(1, 10**6)},
        optional={"peak_kib_s": st.integers(1, 10**6), "burst_kib": st.integers(1, 10**6)},
    )


@st.composite
def nics(draw: Draw, index: int) -> dict[str, Any]:
    """MACs and tap names are made unique by index; direct NICs take neither tap nor allowed_ips (spec gap)."""
    kind = draw(st.sampled_from(["bridge", "network", "direct"]))
    model = draw(st.sampled_from(["virtio", "e1000", "rtl8139"]))
    nic: dict[str, Any] = {
        "type": kind,
        "source": draw(st.from_regex(r"[A-Za-z0-9_.-]{1,15}", fullmatch=True)),
        "mac": f"52:54:00:00:{index // 256:02x}:{index % 256:02x}",
        "model": model,
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "bandwidth": st.fixed_dictionaries({}, optional={"inbound": rates(), "outbound": rates()}),
    }
    if kind == "direct":
        optional["direct_mode"] = st.sampled_from(["bridge", "vepa", "private", "passthrough"])
    else:
        optional["tap"] = st.just(f"vmtap{index}")
        optional["mtu"] = st.integers(68, 65535)
        optional["allowed_ips"] = st.lists(st.ip_addresses().map(str), max_size=3)
    if model == "virtio":
        optional["queues"] = st.integers(1, 16)
    nic.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return nic


@st.composite
def graphics(draw: Draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["vnc", "spice"]))
    password = st.text(
        string.ascii_letters + string.digits + "!#%&'\"<>", min_size=1, max_size=8 if kind == "vnc" else 32
    )
    optional: dict[str, st.SearchStrategy[Any]] = {
        "listen": st.ip_addresses().map(str),
        "port": st.integers(5900, 65535),
        "password": password,
        "video": st.sampled_from(["virtio", "qxl", "vga", "cirrus", "bochs"]),
    }
    if kind == "spice":
        optional["sound"] = st.booleans() | st.sampled_from(["ich9", "ich6", "ac97", "usb"])
        optional["streaming"] = st.sampled_from(["off", "all", "filter"])
    drawn = {"type": kind, **draw(st.fixed_dictionaries({}, optional=optional))}
    if drawn.get("video") == "qxl":
        sizes = st.sampled_from([16384, 65536])
        qxl = st.fixed_dictionaries({f"{bar}_kib": sizes for bar in ("ram", "vram", "vgamem")})
        drawn |= draw(st.fixed_dictionaries({}, optional={"monitors": st.integers(1, 4), "qxl": qxl}))
    return drawn


@st.composite
def cpus_and_numa(draw: Draw, memory_mib: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    vcpus = draw(st.integers(1, 16))
    ceiling = draw(st.none() | st.integers(vcpus, 32))
    total = ceiling or vcpus
    cpu: dict[str, Any] = {
        "vcpus": vcpus,
        "mode": draw(
            st.sampled_from(
                ["auto", "default", "host-model", "host-passthrough", "qemu64", "Skylake-Client-IBRS", "EPYC-v4"]
            )
        ),
    }
    if cpu["mode"] not in ("auto", "default") and draw(st.booleans()):
        cpu["features"] = {"x2apic": draw(st.sampled_from(["disable", "require"]))}
    if draw(st.booleans()):
        cpu["emulator_pinning"] = draw(cpusets())
    if ceiling:
        cpu["max_vcpus"] = ceiling
    if draw(st.booleans()):
        threads = draw(st.sampled_from([t for t in (1, 2, 4, 8) if total % t == 0]))
        cores = draw(st.sampled_from([c for c in range(1, total // threads + 1) if (total // threads) % c == 0]))
        cpu["topology"] = {"sockets": total // threads // cores, "cores": cores, "threads": threads}
    if draw(st.booleans()):
        cpu["shares"] = draw(st.integers(2, 262144))
    pinned = draw(st.lists(st.integers(0, total - 1), unique=True, max_size=4))
    cpu["pinning"] = [{"vcpu": v, "host_cpus": draw(cpusets())} for v in pinned]
    return cpu, draw(numa_cells(total, memory_mib))


def cpusets() -> st.SearchStrategy[str]:
    """Host CPU lists such as '0-3,6' (ranges never run backwards)."""
    part = st.tuples(st.integers(0, 127), st.integers(0, 8)).map(
        lambda p: f"{p[0]}-{p[0] + p[1]}" if p[1] else str(p[0])
    )
    return st.lists(part, min_size=1, max_size=3).map(",".join)


@st.composite
def numa_cells(draw: Draw, vcpus: int, memory_mib: int) -> list[dict[str, Any]]:
    """Contiguous vCPU ranges and whole-MiB memory that add up exactly (spec gap: cells may be any byte count)."""
    count = draw(st.integers(0, min(4, vcpus, memory_mib)))
    if count == 0:
        return []
    cpu_cuts = sorted(draw(st.permutations(range(1, vcpus)))[: count - 1])
    mem_cuts = sorted(draw(st.sets(st.integers(1, memory_mib - 1), min_size=count - 1, max_size=count - 1)))
    cpu_bounds, mem_bounds = [0, *cpu_cuts, vcpus], [0, *mem_cuts, memory_mib]
    cells = []
    for i in range(count):
        low, high = cpu_bounds[i], cpu_bounds[i + 1] - 1
        cpus = (
            str(low)
            if low == high
            else draw(st.sampled_from([f"{low}-{high}", ",".join(map(str, range(low, high + 1)))]))
        )
        cells.append({"cpus": cpus, "memory": f"{mem_bounds[i + 1] - mem_bounds[i]}MiB"})
    return cells


@st.composite
def memories(draw: Draw, size_mib: int) -> Any:
    if draw(st.integers(0, 4)) == 0:
        return f"{size_mib}MiB"
    memory: dict[str, Any] = {
        "size": f"{size_mib}MiB",
        "balloon": draw(st.booleans()),
        "hugepages": draw(st.booleans()),
        "access": draw(st.sampled_from(["private", "shared"])),
        "merge_pages": draw(st.booleans()),
    }
    if memory["balloon"]:
        memory["balloon_stats_period"] = draw(st.integers(0, 3600))
    if draw(st.booleans()):
        memory["max_size"] = f"{draw(st.integers(size_mib, 65536))}MiB"
        memory["slots"] = draw(st.integers(1, 255))
    return memory


def timers() -> st.SearchStrategy[list[dict[str, Any]]]:
    """Each timer once; tickpolicy only on timers the libvirt schema lets have one (spec gap)."""
    policies = st.sampled_from(["delay", "catchup", "merge", "discard"])
    timer = st.sampled_from(["rtc", "pit", "hpet", "kvmclock", "hypervclock", "tsc"]).flatmap(
        lambda name: st.fixed_dictionaries(
            {"name": st.just(name)},
            optional={
                "present": st.booleans(),
                **({} if name in ("kvmclock", "hypervclock") else {"tickpolicy": policies}),
            },
        )
    )
    return st.lists(timer, max_size=4, unique_by=lambda t: t["name"])


def usb_devices() -> st.SearchStrategy[dict[str, Any]]:
    usb_id = st.from_regex(r"0x[0-9a-f]{4}", fullmatch=True)
    return st.one_of(
        st.fixed_dictionaries({"vendor": usb_id, "product": usb_id}),
        st.fixed_dictionaries({"bus": st.integers(0, 255), "device": st.integers(1, 127)}),
    )


@st.composite
def boot_orders(draw: Draw, spec: dict[str, Any]) -> None:
    """Either device classes in <os>, or per-device orders on some devices, never both."""
    devices = [*spec.get("disks", []), *spec.get("cdroms", []), *spec.get("nics", [])]
    if draw(st.booleans()) or not devices:
        spec["boot"]["order"] = draw(st.lists(st.sampled_from(["hd", "cdrom", "network"]), unique=True))
        return
    chosen = draw(st.lists(st.sampled_from(range(len(devices))), unique=True, min_size=1))
    orders = draw(st.permutations(range(1, len(devices) + 1)))
    for position, index in enumerate(chosen):
        devices[index]["boot_order"] = orders[position]


@st.composite
def spec_dicts(draw: Draw) -> dict[str, Any]:
    """A spec dict as a user might write it, exercising most fields of VMSpec."""
    machine = draw(st.sampled_from([None, "pc", "q35", "pc-q35-7.2", "pc-i440fx-7.2"]))
    q35 = machine is not None and "q35" in machine
    size_mib = draw(st.integers(16, 8192))
    cpu, numa = draw(cpus_and_numa(size_mib))
    graphic = draw(st.none() | graphics())
    spice = graphic is not None and graphic["type"] == "spice"
    usb_passthrough = draw(st.lists(usb_devices(), max_size=2))
    usb_choices = ["qemu-xhci", "nec-xhci", "ich9-ehci1", "piix3-uhci"] + ([] if usb_passthrough or spice else ["none"])
    spec: dict[str, Any] = {
        "name": draw(st.from_regex(NAME_PATTERN, fullmatch=True)),
        "uuid": str(draw(st.uuids())),
        "description": draw(xml_text),
        "labels": draw(st.dictionaries(st.from_regex(LABEL_KEY_PATTERN, fullmatch=True), xml_text, max_size=3)),
        "accel": draw(st.sampled_from([None, "kvm", "tcg"])),
        "cpu": cpu,
        "memory": draw(memories(size_mib)),
        "numa": numa,
        "boot": {"firmware": draw(st.sampled_from(["bios", "uefi"])), "menu": draw(st.booleans()), "machine": machine},
        "disks": draw(st.lists(disks(q35), max_size=6)),
        "cdroms": draw(st.lists(cdroms(q35), max_size=3)),
        "nics": [draw(nics(i)) for i in range(draw(st.integers(0, 3)))],
        "graphics": graphic,
        "console": draw(st.fixed_dictionaries({}, optional={"log_file": abs_paths})),
        "passthrough": {
            "pci": [
                {"address": f"0000:{bus:02x}:00.0", "managed": draw(st.booleans())}
                for bus in draw(st.lists(st.integers(1, 255), unique=True, max_size=2))
            ],
            "usb": usb_passthrough,
        },
        "usb": {
            "controller": draw(st.none() | st.sampled_from(usb_choices)),
            "redirection": draw(st.integers(0, 4)) if spice else 0,
        },
        "guest_agent": draw(st.booleans()),
        "clock": {"offset": draw(st.sampled_from(["utc", "localtime"])), "timers": draw(timers())},
        "features": draw(
            st.fixed_dictionaries({k: st.booleans() for k in ("acpi", "apic", "pae", "hide_kvm", "hyperv")})
        ),
        "lifecycle": {
            "on_poweroff": draw(st.sampled_from(["destroy", "restart"])),
            "on_reboot": draw(st.sampled_from(["restart", "destroy"])),
            "on_crash": draw(
                st.sampled_from(["destroy", "restart", "preserve", "coredump-destroy", "coredump-restart"])
            ),
        },
    }
    if draw(st.booleans()):
        spec["boot"]["kernel"] = draw(
            st.fixed_dictionaries({"kernel": abs_paths}, optional={"initrd": abs_paths, "cmdline": xml_text})
        )
    draw(boot_orders(spec))
    return spec


def context_for(spec: VMSpec, accel: str = "kvm") -> RenderContext:
    """What the engine would resolve: image paths for disks it creates, a format for every 'auto' file disk."""
    created = [d.target for d in spec.disks if d.source.type in ("new", "overlay") and d.target]
    probed = [d.target for d in spec.disks if d.source.type == "file" and d.source.format == "auto" and d.target]
    return RenderContext(
        accel="tcg" if accel == "tcg" else "kvm",
        console_log=Path(f"/var/log/vmhost/console/{spec.name}.log"),
        disk_paths={target: Path(f"/var/lib/vmhost/disks/{spec.name}-{target}.qcow2") for target in created},
        disk_formats=dict.fromkeys(probed, "qcow2"),
    )

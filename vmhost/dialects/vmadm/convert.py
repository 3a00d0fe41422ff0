"""A vmadm create payload (kvm or bhyve) as a vmhost spec document, for any driver.

Only what a spec can carry is converted; anything else a payload asks for is a problem naming the payload
path, never silently dropped. Host bookkeeping with no effect on the guest (IGNORED) is left out.
"""

import ipaddress
import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from vmhost.dialects.vmadm import guest, smartos, values
from vmhost.dialects.vmadm.errors import DialectError
from vmhost.dialects.vmadm.smartos import SMARTOS_DISK_KEYS
from vmhost.dialects.vmadm.validate import validate_payload
from vmhost.dialects.vmadm.validation import VmadmValidation
from vmhost.formats.vmadm import OWNER_KEY, SPEC_KEY, image_zvol
from vmhost.spec import parse_spec
from vmhost.spec.errors import Problem, SpecError
from vmhost.spec.nic import IFNAME_RE
from vmhost.spec.vm import NAME_PATTERN

IGNORED = frozenset(
    {
        "brand",
        "owner_uuid",
        "billing_id",
        "package_name",
        "package_version",
        "do_not_inventory",
        "archive_on_delete",
        "zpool",
        "quota",
        "max_physical_memory",
        "max_locked_memory",
        "max_swap",
        "max_lwps",
        "zfs_io_priority",
        "disk_driver",
        "nic_driver",
        "image_name",
        "zfs_storage_pool_name",
    }
)
"""Host bookkeeping (accounting, quotas, zone limits) and defaults already applied to each disk and NIC."""
DEFAULT_RAM_MIB = 256
DEFAULT_ZPOOL = "zones"
CPU_MODES = {"host": "host-passthrough", "qemu64": "qemu64"}
VIDEO = {"std": "vga", "cirrus": "cirrus", "qxl": "qxl"}
DISK_BUSES = {"virtio": "virtio", "ide": "ide", "scsi": "scsi", "ahci": "sata"}
CDROM_BUSES = {"ide": "ide", "scsi": "scsi", "ahci": "sata"}
BOOT_DEVICES = {"c": "hd", "d": "cdrom", "n": "network"}
"""qemu -boot drive letters (kvm passes the boot string to qemu as it is)."""
NIC_KEYS = frozenset({"nic_tag", "mac", "model", "mtu", "primary", "vlan_id", "allowed_ips", *guest.NIC_GUEST_KEYS})
NIC_KEYS |= {"allowed_dhcp_cids"}
DISK_KEYS = frozenset({"boot", "model", "media", "size", "image_uuid", "image_size", "image_name", "zpool"})
DISK_KEYS |= {"nocreate", "path", "pci_slot", *SMARTOS_DISK_KEYS}
VNC_PORTS = (5900, 65535)

Document = dict[str, Any]
ImageLookup = Callable[[str], Mapping[str, Any] | None]
"""An image of vmhost's image store by UUID: its `name` and `virtual_size` (bytes), or None."""
MIB = 1 << 20


class _Conversion:
    """Collects the spec document and every problem on the way."""

    def __init__(self, payload: dict[str, Any], images: ImageLookup | None = None):
        self.payload = payload
        self.images = images
        self.problems: list[Problem] = []
        self.doc: Document = {}

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


def payload_to_spec(payload: Any, images: ImageLookup | None = None) -> Document:
    """The spec document for a payload `vmadm validate create` accepts; DialectError lists what stops it.

    `images` finds an image of vmhost's image store by the UUID recorded at import: with it, `image_uuid`
    disks start from that image; without it (no store at hand, or a SmartOS host, whose images imgadm keeps)
    they are overlays on the image's zvol, as vmadm clones them."""
    if not isinstance(payload, dict):
        validation = VmadmValidation(action="create", brand=None, bad_values=[""])
        raise DialectError([Problem("", f"a vmadm payload is a JSON object, not {type(payload).__name__}")], validation)
    validation = validate_payload(payload)
    if not validation.ok:
        raise DialectError(validation.problems(), validation)
    conversion = _Conversion(payload, images)
    for key in payload:
        CONVERTERS.get(key, _unsupported)(conversion, key)
    conversion.doc.setdefault("memory", f"{DEFAULT_RAM_MIB}MiB")
    _name(conversion)
    _graphics(conversion)
    _guest(conversion)
    smartos.boot_flags(conversion.doc, payload, conversion.problem)
    if conversion.problems:
        raise DialectError(sorted(conversion.problems), validation)
    try:
        parse_spec(dict(conversion.doc))
    except SpecError as exc:
        raise DialectError(exc.problems, validation) from None
    return conversion.doc


def _name(conversion: _Conversion) -> None:
    """alias becomes the VM name, so it must be one (vmadm itself allows any string); without an alias, as vmadm
    allows, the name is derived from the uuid."""
    alias = conversion.payload.get("alias")
    if alias is None:
        conversion.doc["name"] = guest.derived_name(conversion.doc)
    elif _is_name(str(alias)):
        conversion.doc["name"] = str(alias)
    else:
        conversion.problem("alias", f"must be a vmhost VM name ({NAME_PATTERN}, not a UUID); got {alias!r}")


def _guest(conversion: _Conversion) -> None:
    """What the payload tells the guest, once the NICs are converted (resolvers go to the first one)."""
    payload, doc = conversion.payload, conversion.doc
    if "resolvers" in payload:
        guest.resolvers(doc, payload["resolvers"], conversion.problem)
    if payload.get("hostname"):
        guest.hostname(doc, payload["hostname"], conversion.problem)
    if payload.get("routes"):
        guest.routes(doc, payload["routes"], conversion.problem)
    metadata = payload.get("customer_metadata") or {}
    guest.metadata(doc, {k: v for k, v in metadata.items() if guest.is_guest_key(k)}, conversion.problem)


def _is_name(text: str) -> bool:
    if not re.match(NAME_PATTERN, text):
        return False
    try:
        uuidlib.UUID(text)
    except ValueError:
        return True
    return False


def _ignored(_conversion: _Conversion, _key: str) -> None:
    """Host bookkeeping: nothing for the spec."""


def _converted_after(_conversion: _Conversion, _key: str) -> None:
    """Converted once all keys are seen (the name; VNC, whose port, password and vga go together)."""


def _unsupported(conversion: _Conversion, key: str) -> None:
    conversion.problem(key, "has no counterpart in a vmhost spec")


def _uuid(conversion: _Conversion, key: str) -> None:
    conversion.doc["uuid"] = conversion.payload[key]


def _ram(conversion: _Conversion, key: str) -> None:
    ram = values.as_integer(conversion.payload[key])
    conversion.doc["memory"] = f"{ram if ram else DEFAULT_RAM_MIB}MiB"


def _cpu(conversion: _Conversion) -> dict[str, Any]:
    cpu: dict[str, Any] = conversion.doc.setdefault("cpu", {})
    return cpu


def _vcpus(conversion: _Conversion, key: str) -> None:
    vcpus = values.as_integer(conversion.payload[key])
    if vcpus is not None:
        _cpu(conversion)["vcpus"] = vcpus


def _cpu_shares(conversion: _Conversion, key: str) -> None:
    shares = values.as_integer(conversion.payload[key])
    if shares is None:
        return
    if not 2 <= shares <= 10000:
        conversion.problem(key, f"vmhost CPU shares run 2-10000; got {shares}")
        return
    _cpu(conversion)["shares"] = shares


def _cpu_cap(conversion: _Conversion, key: str) -> None:
    if values.as_integer(conversion.payload[key]):
        conversion.problem(key, "vmhost specs have no CPU cap")


def _cpu_type(conversion: _Conversion, key: str) -> None:
    _cpu(conversion)["mode"] = CPU_MODES[conversion.payload[key]]


def _bootrom(conversion: _Conversion, key: str) -> None:
    conversion.doc.setdefault("boot", {})["firmware"] = conversion.payload[key]


def _boot(conversion: _Conversion, key: str) -> None:
    """qemu's `order=` becomes boot.order; `once=` (kvm's next boot only) rides in the smartos block."""
    order, once = smartos.boot_string(str(conversion.payload[key] or ""), conversion.problem)
    if order:
        conversion.doc.setdefault("boot", {})["order"] = order
    if once:
        conversion.doc.setdefault("smartos", {})["boot_once"] = once


def _autoboot(conversion: _Conversion, key: str) -> None:
    """autoboot is 'boot when the host boots': vmhost's autostart."""
    conversion.doc["autostart"] = values.as_boolean(conversion.payload[key])


def _graphics(conversion: _Conversion) -> None:
    """vmadm's VNC is on (on a random port) unless vnc_port is -1."""
    payload = conversion.payload
    port = values.as_integer(payload.get("vnc_port", 0))
    if port == -1:
        return
    graphics: dict[str, Any] = {"type": "vnc"}
    if port:
        if not VNC_PORTS[0] <= port <= VNC_PORTS[1]:
            conversion.problem("vnc_port", f"vmhost VNC ports run {VNC_PORTS[0]}-{VNC_PORTS[1]} (or 0, random)")
        graphics["port"] = port
    if payload.get("vnc_password"):
        graphics["password"] = payload["vnc_password"]
    vga = payload.get("vga")
    if vga is not None:
        if vga in VIDEO:
            graphics["video"] = VIDEO[vga]
        else:
            conversion.problem("vga", f"vmhost has no {vga} video model")
    conversion.doc["graphics"] = graphics


def _customer_metadata(conversion: _Conversion, key: str) -> None:
    labels = {name: _text(value) for name, value in conversion.payload[key].items() if not guest.is_guest_key(name)}
    if labels:
        conversion.doc["labels"] = labels


def _internal_metadata(conversion: _Conversion, key: str) -> None:
    """vmhost's own record (a payload vmhost rendered) is not operator data; anything else has no place."""
    foreign = sorted(name for name in conversion.payload[key] if name not in (OWNER_KEY, SPEC_KEY))
    for name in foreign:
        conversion.problem(f"{key}.{name}", "vmhost keeps no operator metadata for the guest")


def _text(value: Any) -> str:
    """Metadata values as the guest reads them (JavaScript's String())."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _disks(conversion: _Conversion, key: str) -> None:
    payload = conversion.payload
    disks: list[Document] = []
    cdroms: list[Document] = []
    for index, disk in enumerate(payload[key]):
        path = f"{key}.{index}"
        for name in sorted(set(disk) - DISK_KEYS):
            conversion.problem(f"{path}.{name}", "has no counterpart in a vmhost spec")
        model = disk.get("model", payload.get("disk_driver"))
        if disk.get("media", "disk") == "cdrom":
            cdroms.append(_cdrom(conversion, path, disk, model))
        else:
            disks.append(_disk(conversion, path, disk, model))
    if disks:
        conversion.doc["disks"] = disks
    if cdroms:
        conversion.doc["cdroms"] = cdroms


def _bus(conversion: _Conversion, path: str, model: Any, buses: dict[str, str]) -> str:
    if model not in buses:
        conversion.problem(f"{path}.model", f"vmhost has no {model} bus here; it has {', '.join(buses)}")
        return next(iter(buses.values()))
    return buses[model]


def _disk(conversion: _Conversion, path: str, disk: dict[str, Any], model: Any) -> Document:
    entry: Document = {"bus": _bus(conversion, path, model, DISK_BUSES), "source": _source(conversion, path, disk)}
    if values.as_boolean(disk.get("boot", False)):
        entry["boot_order"] = 1
    if "pci_slot" in disk:
        entry["pci_address"] = smartos.pci_address(f"{path}.pci_slot", str(disk["pci_slot"]), conversion.problem)
    entry.update(smartos.disk_block(disk))
    return entry


def _source(conversion: _Conversion, path: str, disk: dict[str, Any]) -> Document:
    if "image_uuid" in disk and conversion.images is not None:
        return _store_image(conversion, path, disk, conversion.images)
    if "image_uuid" in disk:
        base = image_zvol(disk.get("zpool", DEFAULT_ZPOOL), disk["image_uuid"])
        given = disk.get("size", disk.get("image_size"))
        if given is None:  # as large as the image, which imgadm knows
            return {"type": "overlay", "base": base}
        return {"type": "overlay", "base": base, "size": f"{values.as_integer(given)}MiB"}
    if values.as_boolean(disk.get("nocreate", False)) and "path" in disk:
        if str(disk["path"]).startswith("/dev/"):
            return {"type": "block", "path": disk["path"]}
        return {"type": "file", "path": disk["path"], "format": "raw"}
    return {"type": "new", "size": f"{values.as_integer(disk.get('size'))}MiB"}


def _store_image(conversion: _Conversion, path: str, disk: dict[str, Any], images: ImageLookup) -> Document:
    """An image disk on the store's image with that UUID, as large as the image, as vmadm clones it: image_size,
    when given, must be the image's size (vmadm refuses another); `size` (with flexible_disk_size) grows the
    disk, never below the image's size."""
    uuid = str(disk["image_uuid"])
    image = images(uuid)
    if image is None:
        conversion.problem(
            f"{path}.image_uuid", f"no image with uuid {uuid} in vmhost's image store (vmhost image import --uuid)"
        )
        return {"type": "image", "image": uuid}
    source: Document = {"type": "image", "image": image["name"]}
    image_mib = -(-image["virtual_size"] // MIB)
    if "image_size" in disk and values.as_integer(disk["image_size"]) != image_mib:
        conversion.problem(
            f"{path}.image_size",
            f"is the size of image {image['name']} ({image_mib} MiB), not {disk['image_size']}; "
            "to grow the disk give size (with flexible_disk_size)",
        )
    if "size" in disk:
        size = (values.as_integer(disk["size"]) or 0) * MIB  # validated as an integer
        if size < image["virtual_size"]:
            conversion.problem(
                f"{path}.size", f"{size // MIB} MiB is smaller than image {image['name']} ({image_mib} MiB)"
            )
        source["size"] = size
    return source


def _cdrom(conversion: _Conversion, path: str, disk: dict[str, Any], model: Any) -> Document:
    for name in sorted({"pci_slot", *SMARTOS_DISK_KEYS} & set(disk)):
        conversion.problem(
            f"{path}.{name}", "a CD-ROM has no volume or slot of its own in vmhost (it sits on a controller)"
        )
    entry: Document = {"bus": _bus(conversion, path, model, CDROM_BUSES)}
    if disk.get("path"):
        entry["iso"] = disk["path"]
    if values.as_boolean(disk.get("boot", False)):
        entry["boot_order"] = 1
    return entry


def _nics(conversion: _Conversion, key: str) -> None:
    payload = conversion.payload
    nics = []
    for index, nic in enumerate(payload[key]):
        path = f"{key}.{index}"
        for name in sorted(set(nic) - NIC_KEYS):
            conversion.problem(f"{path}.{name}", "has no counterpart in a vmhost spec")
        nics.append(_nic(conversion, path, nic, index))
    conversion.doc["nics"] = nics


def _nic(conversion: _Conversion, path: str, nic: dict[str, Any], index: int) -> Document:
    tag = str(nic["nic_tag"])
    if not IFNAME_RE.match(tag):
        conversion.problem(f"{path}.nic_tag", f"vmhost attaches NICs to host interfaces named by {IFNAME_RE.pattern}")
    entry: Document = {"type": "bridge", "source": tag, "model": nic.get("model", conversion.payload.get("nic_driver"))}
    if "mac" in nic:
        entry["mac"] = str(nic["mac"]).lower()
    if "mtu" in nic:
        entry["mtu"] = values.as_integer(nic["mtu"])
    if values.as_integer(nic.get("vlan_id", 0)):
        conversion.problem(f"{path}.vlan_id", "vmhost specs have no VLAN tagging")
    if values.as_boolean(nic.get("primary", False)) and index:
        conversion.problem(f"{path}.primary", "vmhost makes the first NIC primary; put this NIC first")
    entry.update(guest.nic_guest(path, nic, conversion.problem))
    if "allowed_dhcp_cids" in nic:
        entry["smartos"] = {"allowed_dhcp_cids": values.list_items(nic["allowed_dhcp_cids"])}
    allowed = values.list_items(nic.get("allowed_ips", [])) or []
    if not all(_is_ipv4(address) for address in allowed):
        conversion.problem(f"{path}.allowed_ips", "vmhost filters by single IPv4 addresses only")
    elif allowed:
        entry["allowed_ips"] = allowed
    return entry


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _smartos(conversion: _Conversion, key: str) -> None:
    """tags, flexible_disk_size and pci_devices mean something to SmartOS only: the smartos block keeps them."""
    value = conversion.payload[key]
    if key == "flexible_disk_size":
        value = values.as_integer(value)
    elif key == "pci_devices":
        value = [{name: str(item) for name, item in device.items()} for device in value]
    if value not in (None, {}, []):
        conversion.doc.setdefault("smartos", {})[key] = value


CONVERTERS: dict[str, Callable[[_Conversion, str], None]] = {
    **dict.fromkeys(IGNORED, _ignored),
    "alias": _converted_after,
    "uuid": _uuid,
    "ram": _ram,
    "vcpus": _vcpus,
    "cpu_shares": _cpu_shares,
    "cpu_cap": _cpu_cap,
    "cpu_type": _cpu_type,
    "bootrom": _bootrom,
    "boot": _boot,
    "autoboot": _autoboot,
    "vnc_port": _converted_after,
    "vnc_password": _converted_after,
    "vga": _converted_after,
    "customer_metadata": _customer_metadata,
    "resolvers": _converted_after,
    "hostname": _converted_after,
    "routes": _converted_after,
    "internal_metadata": _internal_metadata,
    "disks": _disks,
    "nics": _nics,
    "tags": _smartos,
    "flexible_disk_size": _smartos,
    "pci_devices": _smartos,
}

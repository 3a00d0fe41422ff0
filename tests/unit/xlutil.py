"""ctypes binding to Xen's own config parser, libxlutil (Debian: libxenmisc4.17; headers: libxen-dev).

xl reads a domain's xl.cfg with exactly these calls (tools/xl/xl_parse.c): xlu_cfg_readdata, the typed getters,
xlu_disk_parse for each disk= item, xlu_vif_parse_rate for a vif's rate=, xlu_pci_parse_spec_string for pci=.
The libxl_device_* structs below are transcribed from the installed /usr/include/_libxl_types.h; their layout
is not a stable ABI, so tests compare it with what gcc computes from that header (see `layout_probe`).
"""

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LIBRARY = "libxlutil.so.4.17"
LIBXENLIGHT = "libxenlight.so.4.17"
PACKAGES = "libxenmisc4.17 libxen-dev"

c_defbool = ctypes.c_int
"""libxl_defbool is struct { int val; }: 0 default, > 0 true, < 0 false."""


class DeviceDisk(ctypes.Structure):
    _fields_ = [
        ("backend_domid", ctypes.c_uint32),
        ("backend_domname", ctypes.c_char_p),
        ("pdev_path", ctypes.c_char_p),
        ("vdev", ctypes.c_char_p),
        ("backend", ctypes.c_int),
        ("format", ctypes.c_int),
        ("script", ctypes.c_char_p),
        ("removable", ctypes.c_int),
        ("readwrite", ctypes.c_int),
        ("is_cdrom", ctypes.c_int),
        ("direct_io_safe", ctypes.c_bool),
        ("discard_enable", c_defbool),
        ("specification", ctypes.c_int),
        ("transport", ctypes.c_int),
        ("irq", ctypes.c_uint32),
        ("base", ctypes.c_uint64),
        ("colo_enable", c_defbool),
        ("colo_restore_enable", c_defbool),
        ("colo_host", ctypes.c_char_p),
        ("colo_port", ctypes.c_int),
        ("colo_export", ctypes.c_char_p),
        ("active_disk", ctypes.c_char_p),
        ("hidden_disk", ctypes.c_char_p),
        ("trusted", c_defbool),
    ]


NIC_COLO_STRINGS = 49
"""The char * fields of libxl_device_nic from coloft_forwarddev to colo_checkpoint_port (none read here)."""


class DeviceNic(ctypes.Structure):
    _fields_ = [
        ("backend_domid", ctypes.c_uint32),
        ("backend_domname", ctypes.c_char_p),
        ("devid", ctypes.c_int),
        ("mtu", ctypes.c_int),
        ("model", ctypes.c_char_p),
        ("mac", ctypes.c_uint8 * 6),
        ("ip", ctypes.c_char_p),
        ("bridge", ctypes.c_char_p),
        ("ifname", ctypes.c_char_p),
        ("script", ctypes.c_char_p),
        ("nictype", ctypes.c_int),
        ("rate_bytes_per_interval", ctypes.c_uint64),
        ("rate_interval_usecs", ctypes.c_uint32),
        ("gatewaydev", ctypes.c_char_p),
        ("colo", ctypes.c_void_p * NIC_COLO_STRINGS),
        ("trusted", c_defbool),
    ]


class DevicePci(ctypes.Structure):
    _fields_ = [
        ("func", ctypes.c_uint8),
        ("dev", ctypes.c_uint8),
        ("bus", ctypes.c_uint8),
        ("domain", ctypes.c_int),
        ("vdevfn", ctypes.c_uint32),
        ("vfunc_mask", ctypes.c_uint32),
        ("msitranslate", ctypes.c_bool),
        ("power_mgmt", ctypes.c_bool),
        ("permissive", ctypes.c_bool),
        ("seize", ctypes.c_bool),
        ("rdm_policy", ctypes.c_int),
        ("name", ctypes.c_char_p),
    ]


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "libxl_device_disk": DeviceDisk,
    "libxl_device_nic": DeviceNic,
    "libxl_device_pci": DevicePci,
}
FORMATS = {0: "unknown", 1: "qcow", 2: "qcow2", 3: "vhd", 4: "raw", 5: "empty", 6: "qed"}
"""libxl_disk_format."""


def layout_probe_source() -> str:
    """A C program printing `struct field offset` (and `struct sizeof size`) for every field declared above,
    as gcc lays them out from the installed headers; the `colo` block stands for its first member."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <libxl.h>", "int main(void) {"]
    for struct, model in STRUCTS.items():
        lines.append(f'printf("{struct} sizeof %zu\\n", sizeof({struct}));')
        for name, *_ in model._fields_:
            member = "coloft_forwarddev" if name == "colo" else name
            lines.append(f'printf("{struct} {name} %zu\\n", offsetof({struct}, {member}));')
    return "\n".join([*lines, "return 0; }", ""])


def ctypes_layout() -> dict[tuple[str, str], int]:
    layout = {}
    for struct, model in STRUCTS.items():
        layout[(struct, "sizeof")] = ctypes.sizeof(model)
        for name, *_ in model._fields_:
            layout[(struct, name)] = getattr(model, name).offset
    return layout


@dataclass(frozen=True)
class Disk:
    target: str | None
    format: str
    vdev: str
    readwrite: bool
    is_cdrom: bool
    removable: bool


class ParseError(Exception):
    """libxlutil refused the text; `report` is what it printed, as xl would show it."""

    def __init__(self, code: int, report: str):
        super().__init__(f"{errno.errorcode.get(code, code)}: {report.strip()}")
        self.code = code
        self.report = report


class Libxlutil:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(LIBRARY)
        self.light = ctypes.CDLL(LIBXENLIGHT)
        self.libc = ctypes.CDLL(None)
        self._declare()

    def _declare(self) -> None:
        lib, light, libc = self.lib, self.light, self.libc
        cfg, char_pp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = [char_pp, ctypes.POINTER(ctypes.c_size_t)]
        libc.fflush.argtypes = [ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.free.argtypes = [ctypes.c_void_p]
        lib.xlu_cfg_init.restype = cfg
        lib.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.xlu_cfg_readdata.argtypes = [cfg, ctypes.c_char_p, ctypes.c_int]
        lib.xlu_cfg_destroy.argtypes = [cfg]
        lib.xlu_cfg_get_string.argtypes = [cfg, ctypes.c_char_p, char_pp, ctypes.c_int]
        lib.xlu_cfg_get_long.argtypes = [cfg, ctypes.c_char_p, ctypes.POINTER(ctypes.c_long), ctypes.c_int]
        lib.xlu_cfg_get_list.argtypes = [
            cfg,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        lib.xlu_cfg_get_listitem.restype = ctypes.c_char_p
        lib.xlu_cfg_get_listitem.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.xlu_disk_parse.argtypes = [cfg, ctypes.c_int, char_pp, ctypes.POINTER(DeviceDisk)]
        lib.xlu_vif_parse_rate.argtypes = [cfg, ctypes.c_char_p, ctypes.POINTER(DeviceNic)]
        lib.xlu_pci_parse_spec_string.argtypes = [cfg, ctypes.POINTER(DevicePci), ctypes.c_char_p]
        for kind, struct in (("disk", DeviceDisk), ("nic", DeviceNic), ("pci", DevicePci)):
            for verb in ("init", "dispose"):
                getattr(light, f"libxl_device_{kind}_{verb}").argtypes = [ctypes.POINTER(struct)]

    @contextmanager
    def config(self, text: str, source: str = "rendered.cfg") -> Iterator["Config"]:
        """A parsed config; raises ParseError with libxlutil's own report if it refuses the text."""
        buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
        stream = self.libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
        handle = self.lib.xlu_cfg_init(stream, source.encode())
        config = Config(self, handle, stream, buffer, size)
        try:
            data = text.encode()
            code = self.lib.xlu_cfg_readdata(handle, data, len(data))
            if code:
                raise ParseError(code, config.report())
            yield config
        finally:
            self.lib.xlu_cfg_destroy(handle)
            self.libc.fclose(stream)
            self.libc.free(buffer)


class Config:
    """Typed reads of one parsed config, each failing loudly as xl would (ESRCH: not set; EINVAL: wrong shape)."""

    def __init__(self, owner: Libxlutil, handle: Any, stream: Any, buffer: Any, size: Any):
        self.owner, self.lib, self.handle = owner, owner.lib, handle
        self._stream, self._buffer, self._size = stream, buffer, size

    def report(self) -> str:
        self.owner.libc.fflush(self._stream)
        return ctypes.string_at(self._buffer, self._size.value).decode(errors="replace") if self._buffer else ""

    def _check(self, code: int, what: str) -> None:
        if code:
            raise ParseError(code, f"{what}: {self.report()}")

    def has(self, key: str) -> bool:
        return self.lib.xlu_cfg_get_list(self.handle, key.encode(), None, None, 1) != errno.ESRCH

    def string(self, key: str) -> str:
        value = ctypes.c_char_p()
        self._check(self.lib.xlu_cfg_get_string(self.handle, key.encode(), ctypes.byref(value), 0), key)
        return (value.value or b"").decode()

    def long(self, key: str) -> int:
        value = ctypes.c_long()
        self._check(self.lib.xlu_cfg_get_long(self.handle, key.encode(), ctypes.byref(value), 0), key)
        return value.value

    def strings(self, key: str) -> list[str]:
        items, count = ctypes.c_void_p(), ctypes.c_int()
        code = self.lib.xlu_cfg_get_list(self.handle, key.encode(), ctypes.byref(items), ctypes.byref(count), 0)
        self._check(code, key)
        return [(self.lib.xlu_cfg_get_listitem(items, i) or b"").decode() for i in range(count.value)]

    def disk(self, spec: str) -> Disk:
        light, disk = self.owner.light, DeviceDisk()
        light.libxl_device_disk_init(ctypes.byref(disk))
        try:
            specs = (ctypes.c_char_p * 1)(spec.encode())
            self._check(self.lib.xlu_disk_parse(self.handle, 1, specs, ctypes.byref(disk)), spec)
            return Disk(
                target=disk.pdev_path.decode() if disk.pdev_path else None,
                format=FORMATS[disk.format],
                vdev=(disk.vdev or b"").decode(),
                readwrite=bool(disk.readwrite),
                is_cdrom=bool(disk.is_cdrom),
                removable=bool(disk.removable),
            )
        finally:
            light.libxl_device_disk_dispose(ctypes.byref(disk))

    def vif_rate(self, rate: str) -> tuple[int, int]:
        """(bytes per interval, interval in microseconds) as libxl would apply them."""
        light, nic = self.owner.light, DeviceNic()
        light.libxl_device_nic_init(ctypes.byref(nic))
        try:
            self._check(self.lib.xlu_vif_parse_rate(self.handle, rate.encode(), ctypes.byref(nic)), rate)
            return nic.rate_bytes_per_interval, nic.rate_interval_usecs
        finally:
            light.libxl_device_nic_dispose(ctypes.byref(nic))

    def pci(self, spec: str) -> tuple[str, bool]:
        """('dddd:bb:ss.f', seize) from a pci= item."""
        light, pci = self.owner.light, DevicePci()
        light.libxl_device_pci_init(ctypes.byref(pci))
        try:
            self._check(self.lib.xlu_pci_parse_spec_string(self.handle, ctypes.byref(pci), spec.encode()), spec)
            return f"{pci.domain:04x}:{pci.bus:02x}:{pci.dev:02x}.{pci.func:x}", pci.seize
        finally:
            light.libxl_device_pci_dispose(ctypes.byref(pci))


def load() -> Libxlutil:
    """The library, or an error saying which packages provide it."""
    try:
        return Libxlutil()
    except OSError as exc:
        raise RuntimeError(
            f"cannot load Xen's config parser {LIBRARY} ({exc}); install the Debian packages {PACKAGES}"
        ) from None


def compile_layout_probe(directory: os.PathLike[str]) -> dict[tuple[str, str], int]:
    """Build and run layout_probe_source() with gcc against the installed libxl headers."""
    import subprocess
    from pathlib import Path

    source = Path(directory) / "layout.c"
    binary = Path(directory) / "layout"
    source.write_text(layout_probe_source())
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True, capture_output=True, text=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    layout = {}
    for line in output.splitlines():
        struct, name, value = line.split()
        layout[(struct, name)] = int(value)
    return layout

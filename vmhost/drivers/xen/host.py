"""What the xen driver must know of xl's and libxl's behaviour beyond argv and output formats (Xen 4.17):
how xl reads domain arguments, when dom0 gives up memory, how long a create may take, and which process
(xl's per-domain monitor) re-creates a rebooting guest. Each rule names the xl/libxl source it follows."""

import re
from pathlib import Path
from typing import Any

from vmhost.drivers import processes

ALL_DIGITS = re.compile(r"[0-9]+")
"""libxl_utils.c libxl_domain_qualifier_to_domid: an argument made only of digits is a domid, unchecked."""
XL_CONF = Path("/etc/xen/xl.conf")
AUTOBALLOON_SETTING = re.compile(r"""^\s*autoballoon\s*=\s*["']?([A-Za-z0-9]+)["']?""", re.MULTILINE)
DOM0_MEM_OPTION = re.compile(r"(?:^|\s)dom0_mem=\S")
MIN_DOM0_MIB = 128
"""libxl_internal.h LIBXL_MIN_DOM0_MEM: libxl_set_memory_target never balloons dom0 below 128 MiB."""
DEVICE_MODEL_SECONDS = 60.0
"""libxl_internal.h LIBXL_DEVICE_MODEL_START_TIMEOUT."""
HOTPLUG_SECONDS = 40.0
"""libxl_internal.h LIBXL_HOTPLUG_TIMEOUT, per hotplug script run."""
CREATE_MARGIN_SECONDS = 20.0
"""Domain building, xenstore and the config parse, on top of libxl's own timeouts."""


def misread(name: str) -> bool:
    """True for a name xl would take for a domain id."""
    return ALL_DIGITS.fullmatch(name) is not None


def autoballoon(xl_conf: Path, xen_commandline: str) -> bool:
    """xl.c parse_global_config: xl.conf's autoballoon = on|1|off|0|auto; auto (the default) means on unless
    Xen's command line sets dom0_mem= (auto_autoballoon)."""
    try:
        found = AUTOBALLOON_SETTING.findall(xl_conf.read_text())
    except OSError:
        found = []
    setting = found[-1] if found else "auto"
    if setting in ("on", "1"):
        return True
    if setting in ("off", "0"):
        return False
    return DOM0_MEM_OPTION.search(xen_commandline) is None


def balloonable_mib(dom0_mib: int) -> int:
    """What xl create's freemem can take from dom0 (xl_vmcontrol.c freemem -> libxl_set_memory_target)."""
    return max(0, dom0_mib - MIN_DOM0_MIB)


def create_timeout(spec: dict[str, Any], hvm: bool) -> float:
    """libxl allows the device model 60 s and each hotplug script 40 s: vif-bridge for every NIC (and again for
    an HVM NIC's -emu tap), block for every disk, at most."""
    scripts = len(spec.get("nics", [])) * (2 if hvm else 1) + len(spec.get("disks", [])) + len(spec.get("cdroms", []))
    return DEVICE_MODEL_SECONDS + HOTPLUG_SECONDS * scripts + CREATE_MARGIN_SECONDS


def monitors(configs: set[str]) -> dict[str, int]:
    """config path -> pid of a live `xl create ... CONFIG` monitor (xl_vmcontrol.c create_domain daemonizes
    and keeps its argv; it lives while xl manages the domain, including the sleep(2) of a guest reboot)."""
    wanted = {config.encode() for config in configs}
    found: dict[str, int] = {}
    if not wanted:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = processes.cmdline(int(entry.name)).split(b"\0")
        if b"create" in argv:
            for config in wanted.intersection(argv):
                found[config.decode()] = int(entry.name)
    return found


def device_model_pid(domid: int) -> int | None:
    """The QEMU libxl started for this domain: its command line carries `-xen-domid <domid>`."""
    needle = f"\0-xen-domid\0{domid}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if needle in processes.cmdline(int(entry.name)):
            return int(entry.name)
    return None

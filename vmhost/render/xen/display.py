"""Remote display, video adapter and serial console of an HVM guest (PVH guests have the PV console only)."""

from ipaddress import IPv6Address

from vmhost.render.xen.context import Problems
from vmhost.render.xen.domain import domain_type
from vmhost.render.xen.values import Settings, XlNumber, XlString, flag
from vmhost.spec import VMSpec
from vmhost.spec.graphics import Graphics
from vmhost.spec.sound import sound_model

VNC_BASE_PORT = 5900
VGA = {"vga": "stdvga", "cirrus": "cirrus", "qxl": "qxl"}
"""xl's vga= names for the spec's video adapters; virtio and bochs have none."""


def display_settings(spec: VMSpec) -> Settings:
    if domain_type(spec) != "hvm":
        return {}
    graphics = spec.graphics
    settings: Settings = {}
    if graphics is None:
        settings |= {"vnc": flag(False), "nographic": flag(True)}
    elif graphics.type == "vnc":
        settings |= _vnc(graphics)
    else:
        settings |= {"vnc": flag(False), **_spice(graphics)}
    if graphics is not None and graphics.video is not None:
        settings["vga"] = XlString(VGA[graphics.video])
    settings["serial"] = XlString("pty")
    return settings


def _vnc(graphics: Graphics) -> Settings:
    settings: Settings = {"vnc": flag(True), "vnclisten": XlString(str(graphics.listen))}
    if graphics.port is None:
        settings["vncunused"] = flag(True)
    else:
        settings["vncdisplay"] = XlNumber(graphics.port - VNC_BASE_PORT)
    if graphics.password is not None:
        settings["vncpasswd"] = XlString(graphics.password.get_secret_value())
    return settings


def _spice(graphics: Graphics) -> Settings:
    """Raises ValueError without a port: libxl requires spiceport (it picks none itself)."""
    if graphics.port is None:
        raise ValueError("xl needs a SPICE port; set graphics.port")
    settings: Settings = {"spice": flag(True), "spicehost": XlString(str(graphics.listen))}
    settings["spiceport"] = XlNumber(graphics.port)
    if graphics.password is None:
        settings["spicedisable_ticketing"] = flag(True)
    else:
        settings["spicepasswd"] = XlString(graphics.password.get_secret_value())
    if graphics.sound:
        settings["soundhw"] = XlString("hda")
    return settings


def display_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    graphics = spec.graphics
    if graphics is not None:
        if isinstance(graphics.listen, IPv6Address):
            problems.append(("graphics.listen", "the xen driver listens on IPv4 addresses only"))
        if graphics.type == "spice" and graphics.port is None:
            problems.append(("graphics.port", "xl needs a fixed SPICE port"))
        if graphics.video is not None and graphics.video not in VGA:
            problems.append(("graphics.video", f"Xen HVM guests have no {graphics.video} video adapter"))
        if graphics.monitors > 1 or graphics.qxl is not None:
            problems.append(("graphics.monitors", "xl gives a guest one video adapter with its default memory"))
        if graphics.tablet:
            problems.append(("graphics.tablet", "the xen driver adds no USB tablet"))
        if graphics.streaming is not None:
            problems.append(("graphics.streaming", "xl sets no SPICE streaming mode"))
        if sound_model(graphics.sound) not in (None, "ich6", "ich9"):
            problems.append(("graphics.sound", "xl's sound card is Intel HDA (ich6 or ich9)"))
    if spec.console.log_file is not None:
        problems.append(
            ("console.log_file", "xl cannot log one guest's console to a file; xenconsoled logs all guests")
        )
    return problems

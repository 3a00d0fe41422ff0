"""Remote display: VNC port and password, and the kvm VGA model. No graphics means VNC off (port -1)."""

from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

from vmhost.render.vmadm.brands import Brand
from vmhost.spec import VMSpec

VNC_DISABLED = -1
VNC_RANDOM_PORT = 0
KVM_VGA = {"vga": "std", "cirrus": "cirrus", "qxl": "qxl"}
DEFAULT_LISTEN = IPv4Address("127.0.0.1")
VNC_PASSWORD_MAX = 8


def render_graphics(spec: VMSpec, brand: Brand) -> dict[str, Any]:
    graphics = spec.graphics
    if graphics is None:
        return {"vnc_port": VNC_DISABLED}
    payload: dict[str, Any] = {"vnc_port": graphics.port if graphics.port is not None else VNC_RANDOM_PORT}
    if graphics.password is not None:
        payload["vnc_password"] = graphics.password.get_secret_value()
    if brand == "kvm" and graphics.video in KVM_VGA:
        payload["vga"] = KVM_VGA[graphics.video]
    return payload


def graphics_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    graphics = spec.graphics
    if graphics is None:
        return
    if graphics.type != "vnc":
        yield "graphics.type", "vmhost renders only VNC for vmadm"
    if graphics.listen != DEFAULT_LISTEN:
        yield "graphics.listen", "vmadm chooses the VNC listen address itself"
    if graphics.password is not None and len(graphics.password.get_secret_value()) > VNC_PASSWORD_MAX:
        yield "graphics.password", f"vmadm VNC passwords are at most {VNC_PASSWORD_MAX} characters"
    if graphics.sound:
        yield "graphics.sound", "vmadm VMs have no sound card"
    if graphics.monitors > 1:
        yield "graphics.monitors", "vmadm gives a VM one display"
    if graphics.qxl is not None:
        yield "graphics.qxl", "vmadm keeps the video adapter's default memory"
    if graphics.streaming is not None:
        yield "graphics.streaming", "a SPICE setting; vmadm VMs have VNC only"
    if graphics.video is not None and (brand == "bhyve" or graphics.video not in KVM_VGA):
        accepted = ", ".join(KVM_VGA) if brand == "kvm" else "none (bhyve has one framebuffer)"
        yield "graphics.video", f"the {brand} brand accepts video {accepted}"

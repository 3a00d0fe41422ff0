"""Remote display and what travels with it: video adapter, SPICE sound and SPICE USB redirection."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec import VMSpec


def graphics_elements(spec: VMSpec) -> list[etree._Element]:
    """<graphics>, <sound>, <video> and <redirdev> devices; none for a headless VM."""
    graphics = spec.graphics
    if graphics is None:
        return []
    listen = str(graphics.listen)
    password = graphics.password.get_secret_value() if graphics.password else None
    node = element(
        "graphics",
        type=graphics.type,
        port=graphics.port,
        autoport="yes" if graphics.port is None else "no",
        listen=listen,
        passwd=password,
    )
    sub(node, "listen", type="address", address=listen)
    parts = [node]
    if graphics.sound:
        parts.append(element("sound", model="ich9"))
    if graphics.video:
        video = element("video")
        sub(video, "model", type=graphics.video)
        parts.append(video)
    parts += [element("redirdev", bus="usb", type="spicevmc") for _ in range(spec.usb.redirection)]
    return parts

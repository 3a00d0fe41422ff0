"""Remote display and what travels with it: video adapters, SPICE sound and SPICE USB redirection."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub
from vmhost.render.libvirt.sound import sound_element
from vmhost.spec import VMSpec
from vmhost.spec.graphics import Graphics


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
    if graphics.streaming:
        sub(node, "streaming", mode=graphics.streaming)
    parts = [node]
    sound = sound_element(spec)
    if sound is not None:
        parts.append(sound)
    parts += video_elements(graphics)
    if graphics.tablet:
        parts.append(element("input", type="tablet", bus="usb"))
    parts += [element("redirdev", bus="usb", type="spicevmc") for _ in range(spec.usb.redirection)]
    return parts


def video_elements(graphics: Graphics) -> list[etree._Element]:
    """One adapter, or one qxl adapter per monitor: that is how SPICE gives Windows guests several screens."""
    if not graphics.video:
        return []
    qxl = graphics.qxl
    memory = {"ram": qxl.ram_kib, "vram": qxl.vram_kib, "vgamem": qxl.vgamem_kib} if qxl else {}
    videos = []
    for _ in range(graphics.monitors):
        video = element("video")
        sub(video, "model", type=graphics.video, **memory)
        videos.append(video)
    return videos

"""The virtio-serial channel the QEMU guest agent listens on (libvirt picks the host socket path)."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def guest_agent_channel() -> etree._Element:
    channel = element("channel", type="unix")
    sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    return channel

"""The guest's sound card."""

from lxml import etree

from vmhost.render.libvirt.nodes import element
from vmhost.spec import VMSpec
from vmhost.spec.sound import sound_model


def sound_element(spec: VMSpec) -> etree._Element | None:
    """<sound> of the card graphics.sound names; None without one (the spec allows sound only with SPICE)."""
    model = sound_model(spec.graphics.sound) if spec.graphics else None
    return element("sound", model=model) if model else None

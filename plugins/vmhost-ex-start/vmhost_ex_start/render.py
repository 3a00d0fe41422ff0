"""The render hook: the block's devices as libvirt XML."""

from lxml import etree

from vmhost.spec import VMSpec
from vmhost_ex_start.spec import PLUGIN, ExStartBlock, Watchdog


def watchdog_element(watchdog: Watchdog) -> etree._Element:
    return etree.Element("watchdog", model=watchdog.model, action=watchdog.action)


def add_devices(spec: VMSpec, domain: etree._Element) -> None:
    """The watchdog goes where libvirt itself writes it: before the memory balloon, else last."""
    block: ExStartBlock | None = spec.extension(PLUGIN)
    if block is None or block.watchdog is None:
        return
    devices = domain.find("devices")
    if devices is None:
        raise ValueError("the domain has no <devices> element")
    watchdog = watchdog_element(block.watchdog)
    balloon = devices.find("memballoon")
    if balloon is None:
        devices.append(watchdog)
    else:
        balloon.addprevious(watchdog)

"""The serial console the CLI attaches to, logged by virtlogd so output survives detaching and restarts."""

from lxml import etree

from vmhost.render.libvirt.context import RenderContext
from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec import VMSpec


def console_elements(spec: VMSpec, ctx: RenderContext) -> list[etree._Element]:
    """A pty <serial> on port 0 and the <console> that aliases it; libvirt pairs them by type and port."""
    serial = element("serial", type="pty")
    sub(serial, "log", file=str(spec.console.log_file or ctx.console_log), append="on")
    sub(serial, "target", port=0)
    console = element("console", type="pty")
    sub(console, "target", type="serial", port=0)
    return [serial, console]

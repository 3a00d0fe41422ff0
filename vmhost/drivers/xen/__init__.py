"""The xen driver: Xen domains through the `xl` command."""

from vmhost.drivers.xen.driver import XlDriver

__all__ = ["XlDriver"]

"""Tiny lxml helpers shared by the part builders, so each builder reads like the XML it makes."""

from lxml import etree

Attr = str | int | None


def sub(parent: etree._Element, tag: str, text: str | int | None = None, **attrs: Attr) -> etree._Element:
    """Append a child; attributes whose value is None are left out, so optional settings need no `if`."""
    child = element(tag, text, **attrs)
    parent.append(child)
    return child


def element(tag: str, text: str | int | None = None, **attrs: Attr) -> etree._Element:
    """A detached element, for builders that return a whole part to be placed by the caller."""
    node = etree.Element(tag)
    for name, value in attrs.items():
        if value is not None:
            node.set(name, str(value))
    if text is not None:
        node.text = str(text)
    return node


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def kib(size: int, what: str) -> int:
    """Bytes to KiB; refuse rather than silently round, because a rounded size is a different VM."""
    if size % 1024:
        raise ValueError(f"{what} must be a whole number of KiB, got {size} bytes")
    return size // 1024

"""The three kinds of value an xl.cfg file holds, and the one serializer that writes them.

xl.cfg(5) values are "strings", non-negative NUMBERs or [lists]; keys are lower case. Everything the renderer
emits goes through these types, so quoting is decided in exactly one place.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KEY_RE = re.compile(r"^[a-z][._0-9a-z]*$")
"""libxlu_cfg_l.l: anything else is a lexical error."""
ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
"""The escapes libxlutil decodes reliably; its \\x and octal escapes are rejected or mis-decoded (4.17)."""
UNQUOTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class XlString:
    value: str

    def __post_init__(self) -> None:
        found = UNQUOTABLE.search(self.value)
        if found:
            raise ValueError(f"xl.cfg strings cannot carry the control character {found.group()!r}")


@dataclass(frozen=True)
class XlNumber:
    """xl's lexer reads a NUMBER as [0-9][0-9a-fx]*: no sign, so never negative."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or self.value < 0:
            raise ValueError(f"xl.cfg numbers are non-negative integers, got {self.value!r}")


@dataclass(frozen=True)
class XlList:
    items: tuple["XlValue", ...]


XlValue = XlString | XlNumber | XlList
Settings = dict[str, XlValue]


def flag(value: bool) -> XlNumber:
    """xl BOOLEANs are NUMBERs: 0 is false."""
    return XlNumber(int(value))


def strings(values: Iterable[str]) -> XlList:
    return XlList(tuple(XlString(value) for value in values))


def _quoted(text: str) -> str:
    return '"' + "".join(ESCAPES.get(char, char) for char in text) + '"'


def _value(value: XlValue) -> str:
    if isinstance(value, XlString):
        return _quoted(value.value)
    if isinstance(value, XlNumber):
        return str(value.value)
    if not isinstance(value, XlList):
        raise TypeError(f"{value!r} is not an xl.cfg value (XlString, XlNumber or XlList)")
    if not value.items:
        return "[]"
    return "[\n" + "".join(f"    {_value(item)},\n" for item in value.items) + "    ]"


def serialize(settings: Mapping[str, XlValue]) -> str:
    """One `key = value` statement per line, in the order given."""
    lines = []
    for key, value in settings.items():
        if not KEY_RE.match(key):
            raise ValueError(f"{key!r} is not an xl.cfg key (lower case letters, digits, '.', '_')")
        lines.append(f"{key} = {_value(value)}\n")
    return "".join(lines)

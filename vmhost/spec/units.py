"""Byte sizes with units ("512MiB", "2GiB"), stored as integer bytes."""

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_MULTIPLIERS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_SIZE_PATTERN = r"^\s*\d+\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"


def parse_size(value: Any) -> int:
    """Accept an integer byte count or a string with a binary/decimal unit."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as '512MiB' or a byte count, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _MULTIPLIERS:
            return int(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
        raise ValueError(f"must be a size such as '512MiB', '2GiB' or a byte count, got {value!r}")
    raise ValueError(f"must be a size such as '512MiB' or a byte count, got {type(value).__name__}")


def format_size(value: int) -> str:
    """Render bytes in the largest binary unit that divides them exactly."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": _SIZE_PATTERN},
            ],
            "description": "Size in bytes, or a string with a unit: KiB, MiB, GiB, TiB (binary) or KB, MB, GB, TB "
            "(decimal); a bare K, M, G or T is binary, as QEMU and libvirt read it (256M = 256MiB). Case is ignored.",
        }
    ),
]

MiB = 1024**2

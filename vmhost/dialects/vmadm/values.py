"""vmadm's property types, checked the way VM.js validateProperty checks them (see the reference notes, A3)."""

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAC = re.compile(r"^([0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2}$")
NAMESPACE = re.compile(r"^[A-Za-z0-9._-]+$")
DHCP_CID = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
"""utils.validCID (with its length limit of 512 checked beside it)."""
TRUE_VALUES = (True, "true", 1, "1")
FALSE_VALUES = (False, "false")


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID.match(value))


def _one_of(value: Any, candidates: tuple[Any, ...]) -> bool:
    """Equal and of the same type: True is not 1 here, as in JavaScript."""
    return any(type(value) is type(c) and value == c for c in candidates)


def is_boolean(value: Any) -> bool:
    """1 and "1" pass (vmadm warns that they are deprecated); other numbers do not."""
    return _one_of(value, (*TRUE_VALUES, *FALSE_VALUES))


def as_boolean(value: Any) -> bool:
    return _one_of(value, TRUE_VALUES)


def as_integer(value: Any) -> int | None:
    """Number(value) when it is an integer, like JavaScript; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text) if text else 0.0
        except ValueError:
            return None
        return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


def is_unset(value: Any) -> bool:
    """Empty or null integers mean 'unset' and always pass."""
    return value is None or value == ""


def integer_check(minimum: int | None, maximum: int | None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if is_unset(value):
            return True
        number = as_integer(value)
        if number is None:
            return False
        return (minimum is None or number >= minimum) and (maximum is None or number <= maximum)

    return check


def is_string(value: Any) -> bool:
    return value is None or isinstance(value, str)


def list_items(value: Any) -> list[str] | None:
    """A list: an array of strings or numbers, or a comma-separated string; None if it is neither."""
    if isinstance(value, str):
        return [item for item in value.split(",") if item]
    if isinstance(value, list) and all(isinstance(i, str | int | float) and not isinstance(i, bool) for i in value):
        items = [str(i) for i in value]
        return None if any("," in item for item in items) else items
    return None


def is_list(value: Any) -> bool:
    return list_items(value) is not None


def is_flat_object(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str | int | float | bool) for v in value.values())


def is_object_array(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def is_ip(text: str) -> bool:
    """net.isIP: a plain IPv4 or IPv6 address, no prefix."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_mac(value: Any) -> bool:
    return isinstance(value, str) and bool(MAC.match(value))


def is_power_of_two(number: int) -> bool:
    return number > 0 and number & (number - 1) == 0

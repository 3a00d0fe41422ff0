"""ZStack's values as the management node sends them: UUIDs, numbers, flags, objects and lists.

Every helper names the ZStack field (its `path`) when a value is malformed, so a refusal points at the field.
"""

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from vmhost.errors import VmhostError

LOOPBACK = "127.0.0.1"
NAME_LABEL = "zstack.vm-name"
FALLBACK_NAME_PREFIX = "zs-"

Command = Mapping[str, Any]
Document = dict[str, Any]


class Unmappable(VmhostError):
    """One ZStack field that has no vmhost equivalent (or a malformed value); `path` is ZStack's name for it."""

    code = "unmappable"

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.problem = message


# ---- identity ------------------------------------------------------------------------------------


def vm_uuid(value: object, path: str = "vmInstanceUuid") -> str:
    """ZStack writes UUIDs as 32 hex digits; vmhost stores the canonical dashed form."""
    if not isinstance(value, str):
        raise Unmappable(path, "is required (a VM UUID)")
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise Unmappable(path, f"must be a UUID, got {value!r}") from None


def zstack_uuid(canonical: str) -> str:
    """The form the management node uses as its key in replies (vmsync states, checkstate)."""
    return uuidlib.UUID(canonical).hex


def fallback_name(canonical_uuid: str) -> str:
    """A vmhost name for a VM whose ZStack name is unusable (characters, length) or already taken."""
    return FALLBACK_NAME_PREFIX + zstack_uuid(canonical_uuid)


# ---- value helpers -------------------------------------------------------------------------------


def integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unmappable(path, f"must be a whole number, got {value!r}")
    return value


def optional_integer(cmd: Command, key: str) -> int | None:
    value = cmd.get(key)
    return None if value is None else integer(value, key)


def flag(value: object) -> bool:
    """Older management nodes send some booleans as the strings "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def json_object(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Unmappable(path, f"must be an object, got {value!r}")
    return value


def json_list(value: object, path: str) -> list[Any]:
    """A JSON list; ZStack sends null or [] for "none" interchangeably."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Unmappable(path, f"must be a list, got {value!r}")
    return value


def choice(value: object, path: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise Unmappable(path, f"must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def addons_of(cmd: Command) -> Mapping[str, Any]:
    return json_object(cmd.get("addons"), "addons")


def is_set(value: object) -> TypeGuard[int]:
    """ZStack marks "not set" with null, 0 or -1."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0

"""Summary rows of VMs, shared by every interface: the fields, key=value filters and sorting of `list`."""

from collections.abc import Callable
from functools import partial
from typing import Any

from vmhost.engine.states import VmState
from vmhost.spec.units import parse_size
from vmhost.store.sqlite import VmRecord

FIELDS: dict[str, Callable[[VmRecord, VmState], Any]] = {
    "name": lambda r, s: r.name,
    "uuid": lambda r, s: r.uuid,
    "kind": lambda r, s: r.spec.get("kind", "vm"),
    "driver": lambda r, s: r.driver,
    "state": lambda r, s: s.value,
    "vcpus": lambda r, s: r.spec["cpu"]["vcpus"],
    "memory": lambda r, s: r.spec["memory"]["size"],
    "accel": lambda r, s: r.spec.get("accel") or "",
    "disks": lambda r, s: len(r.spec["disks"]),
    "nics": lambda r, s: len(r.spec["nics"]),
    "description": lambda r, s: r.spec.get("description", ""),
}
_SORT_KEYS: dict[str, Callable[[Any], Any]] = {"memory": parse_size}


def summary(record: VmRecord, state: VmState) -> dict[str, Any]:
    return {name: getter(record, state) for name, getter in FIELDS.items()}


def _sort_value(field: str, row: dict[str, Any]) -> Any:
    convert = _SORT_KEYS.get(field)
    return convert(row[field]) if convert else row[field]


def select(rows: list[dict[str, Any]], filters: dict[str, str], sort: str | None = None) -> list[dict[str, Any]]:
    """Keep rows whose fields equal every filter value; sort by 'field[,field]' ('-field' descending)."""
    for key, value in filters.items():
        if key not in FIELDS:
            raise ValueError(f"cannot filter on {key!r}; fields: {', '.join(FIELDS)}")
        rows = [row for row in rows if str(row[key]) == value]
    for key in reversed(sort.split(",") if sort else ["name"]):
        field = key.lstrip("-")
        if field not in FIELDS:
            raise ValueError(f"cannot sort by {field!r}; fields: {', '.join(FIELDS)}")
        rows = sorted(rows, key=partial(_sort_value, field), reverse=key.startswith("-"))
    return rows

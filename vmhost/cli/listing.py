"""`vmhost list` rows: fields, vmadm-style filters, sorting and the three output formats."""

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from vmhost.engine.states import VmState
from vmhost.spec.units import parse_size
from vmhost.store.sqlite import VmRecord

FIELDS: dict[str, Callable[[VmRecord, VmState], Any]] = {
    "name": lambda r, s: r.name,
    "uuid": lambda r, s: r.uuid,
    "driver": lambda r, s: r.driver,
    "state": lambda r, s: s.value,
    "vcpus": lambda r, s: r.spec["cpu"]["vcpus"],
    "memory": lambda r, s: r.spec["memory"]["size"],
    "accel": lambda r, s: r.spec.get("accel") or "",
    "disks": lambda r, s: len(r.spec["disks"]),
    "nics": lambda r, s: len(r.spec["nics"]),
    "description": lambda r, s: r.spec.get("description", ""),
}
DEFAULT_FIELDS = ["name", "uuid", "driver", "state", "vcpus", "memory"]
_SORT_KEYS: dict[str, Callable[[Any], Any]] = {"memory": parse_size}


def _sort_value(field: str, row: dict[str, Any]) -> Any:
    convert = _SORT_KEYS.get(field)
    return convert(row[field]) if convert else row[field]


def parse_fields(option: str | None) -> list[str]:
    fields = option.split(",") if option else DEFAULT_FIELDS
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    return fields


def rows(entries: list[tuple[VmRecord, VmState]], filters: list[str], sort: str | None) -> list[dict[str, Any]]:
    """Each entry as a dict of every field, filtered by key=value and sorted by '-s field[,field]' (-field desc)."""
    table = [{name: getter(record, state) for name, getter in FIELDS.items()} for record, state in entries]
    for expression in filters:
        key, sep, value = expression.partition("=")
        if not sep or key not in FIELDS:
            raise ValueError(f"filter {expression!r} must be field=value with a field among {', '.join(FIELDS)}")
        table = [row for row in table if str(row[key]) == value]
    for key in reversed(sort.split(",") if sort else ["name"]):
        field = key.lstrip("-")
        if field not in FIELDS:
            raise ValueError(f"cannot sort by {field!r}; known: {', '.join(FIELDS)}")
        table.sort(key=partial(_sort_value, field), reverse=key.startswith("-"))
    return table


def render(
    table: list[dict[str, Any]], fields: list[str], *, as_json: bool, parsable: bool, header: bool, console: Console
) -> None:
    if as_json:
        console.print_json(json.dumps([{f: row[f] for f in fields} for row in table]))
        return
    if parsable:
        for row in table:
            console.print(":".join(str(row[f]).replace(":", "\\:") for f in fields), markup=False, highlight=False)
        return
    out = Table(box=box.SIMPLE_HEAD if header else None, show_header=header, pad_edge=False, show_edge=False)
    for field in fields:
        out.add_column(field.upper(), no_wrap=True)
    for row in table:
        out.add_row(*(str(row[f]) for f in fields))
    console.print(out, markup=False, highlight=False)

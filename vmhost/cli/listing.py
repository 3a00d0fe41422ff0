"""`vmhost list` output: the field selection and the three formats (table, parsable, JSON)."""

import json
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from vmhost.engine.states import VmState
from vmhost.engine.views import FIELDS

DEFAULT_FIELDS = ["name", "uuid", "kind", "driver", "state", "vcpus", "memory"]
LIVE_FIELDS = ("ip",)
"""Fields asked of each running VM's driver (the guest's addresses) only when a listing names them."""


def parse_fields(option: str | None) -> list[str]:
    fields = option.split(",") if option else DEFAULT_FIELDS
    known = [*FIELDS, *LIVE_FIELDS]
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return fields


def stored_fields(fields: list[str]) -> list[str]:
    """What to ask the backend for: the fields shown, less the live ones, plus the name they are asked by."""
    stored = [field for field in fields if field not in LIVE_FIELDS]
    return stored if stored == fields or "name" in stored else ["name", *stored]


def parse_filters(expressions: list[str]) -> dict[str, str]:
    filters = {}
    for expression in expressions:
        key, sep, value = expression.partition("=")
        if not sep:
            raise ValueError(f"filter {expression!r} must be field=value")
        filters[key] = value
    return filters


def guest_ip(view: dict[str, Any]) -> str:
    """The addresses `get` reports for a VM's NICs, comma-separated; empty when stopped or unknown."""
    runtime = view.get("runtime") or {}
    return ",".join(address.split("/")[0] for nic in runtime.get("nics", []) for address in nic["addresses"])


def check_state_filter(filters: dict[str, str]) -> None:
    """`state=bogus` is a typo, not a question with an empty answer."""
    wanted = filters.get("state")
    states = [state.value for state in VmState]
    if wanted is not None and wanted not in states:
        raise ValueError(f"unknown state {wanted!r}; states are {', '.join(states)}")


def render(
    table: list[dict[str, Any]], fields: list[str], *, as_json: bool, parsable: bool, header: bool, console: Console
) -> None:
    if as_json:
        console.print_json(json.dumps([{f: row[f] for f in fields} for row in table]))
        return
    if parsable:
        for row in table:
            console.print(":".join(_cell(row[f]).replace(":", "\\:") for f in fields), markup=False, highlight=False)
        return
    out = Table(box=box.SIMPLE_HEAD if header else None, show_header=header, pad_edge=False, show_edge=False)
    for field in fields:
        out.add_column(field.upper(), no_wrap=True)
    for row in table:
        out.add_row(*(_cell(row[f]) for f in fields))
    console.print(out, markup=False, highlight=False)


def _cell(value: Any) -> str:
    """Labels as KEY=VALUE,KEY=VALUE (as `list label.KEY=VALUE` filters them); anything else as str()."""
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)

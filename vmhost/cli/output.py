"""How the CLI writes times and JSON: ISO 8601 (UTC) in JSON output, "3 min ago" style in tables; the API keeps
Unix seconds, which programs compute with."""

import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

TIME_KEYS = ("time",)
"""Keys holding Unix times besides those ending in `_at` (created_at, started_at, imported_at...)."""


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human_time(seconds: float | None, now: float | None = None) -> str:
    """`42s ago`, `5 min ago`, `3 h ago`, then the date and time (UTC)."""
    if seconds is None:
        return "-"
    age = (time.time() if now is None else now) - seconds
    if 0 <= age < 60:
        return f"{age:.0f}s ago"
    if 0 <= age < 3600:
        return f"{age // 60:.0f} min ago"
    if 0 <= age < 86400:
        return f"{age // 3600:.0f} h ago"
    return iso_time(seconds).replace("T", " ")


def with_iso_times(value: Any) -> Any:
    """A copy of a JSON document with every Unix time (a `*_at` or `time` key) as ISO 8601."""
    if isinstance(value, dict):
        return {key: _converted(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_iso_times(item) for item in value]
    return value


def _converted(key: str, item: Any) -> Any:
    is_time = key.endswith("_at") or key in TIME_KEYS
    if is_time and isinstance(item, int | float) and not isinstance(item, bool):
        return iso_time(item)
    return with_iso_times(item)


def print_json(console: Console, value: Any) -> None:
    console.print_json(json.dumps(with_iso_times(value), default=str))

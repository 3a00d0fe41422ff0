"""Spec problems: every one names its JSON path and says what is wrong in plain English."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(Exception):
    """A spec (or a request built from one) was refused; nothing was changed on the host."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def join_path(parts: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in parts)


def _path_through_input(loc: tuple[Any, ...], data: Any) -> str:
    return join_path(path_parts(loc, data))


def path_parts(loc: tuple[Any, ...], data: Any) -> list[str | int]:
    """Drop the discriminator tags pydantic inserts into locations of tagged unions (a tag is never last; it
    may also be a field's name, as `image` is in an image source). A disk in the `{image: ...}` shorthand stands
    for its own source."""
    parts: list[str | int] = []
    node = data
    for index, element in enumerate(loc):
        tag = isinstance(node, dict) and element == node.get("type")
        if tag and (element not in node or index < len(loc) - 1):
            continue
        parts.append(element)
        if isinstance(node, dict) and element == "source" and "source" not in node and "image" in node:
            node = {"type": "image", **node}
        elif isinstance(node, dict):
            node = node.get(element)
        elif isinstance(node, list) and isinstance(element, int) and element < len(node):
            node = node[element]
        else:
            node = None
    return parts


def _plain_message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}; got {error.get('input')!r}"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"type must be one of {expected}; got {error.get('ctx', {}).get('tag')!r}"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{error.get('input')!r} is not of the allowed form {pattern}"
    message: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def problems_from_validation_error(exc: ValidationError, data: Any) -> list[Problem]:
    return sorted({Problem(_path_through_input(tuple(e["loc"]), data), _plain_message(e)) for e in exc.errors()})

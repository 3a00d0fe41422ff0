"""Markdown reference of every spec field, generated from the models so it never drifts from them."""

import types
import typing
from enum import Enum
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from vmhost.spec.units import format_size
from vmhost.spec.vm import VMSpec


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin is typing.Annotated:
        base, *extra = get_args(annotation)
        if any(getattr(e, "json_schema", None) for e in extra):
            return "size"
        return _type_name(base)
    if origin in (typing.Union, types.UnionType):
        args = get_args(annotation)
        tagged = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel) and "type" in a.model_fields]
        if len(tagged) == len(args) > 1:
            return "one of " + ", ".join(f"[{a.__name__}](#{a.__name__.lower()})" for a in args)
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (list, dict):
        return f"{origin.__name__} of " + ", ".join(_type_name(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        factory = field.default_factory
        if factory.__name__ in ("uuid4", "generate_mac"):
            return "generated"
        return "see block" if isinstance(factory, type) and issubclass(factory, BaseModel) else "empty"
    if field.default is PydanticUndefined or field.default is None:
        return "—"
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"
    if field.metadata and _type_name(field.annotation) == "size" and isinstance(field.default, int):
        return f"`{format_size(field.default)}`"
    return f"`{field.default}`" if field.default != "" else '`""`'


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> None:
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for candidate in _nested(field.annotation):
            _models(candidate, seen)


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _nested(arg)]


def markdown_reference() -> str:
    seen: dict[str, type[BaseModel]] = {}
    _models(VMSpec, seen)
    lines = ["# Spec reference", "", "Generated from `vmhost/spec` by `scripts/gen-spec-reference`; do not edit.", ""]
    for name, model in seen.items():
        lines += [f"## {name}", "", " ".join((model.__doc__ or "").split()), ""]
        lines += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for field_name, field in model.model_fields.items():
            description = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{field_name}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
        lines.append("")
    return "\n".join(lines)

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


EXAMPLES: dict[str, str] = {
    "Cpu": "cpu:\n  vcpus: 2\n  max_vcpus: 4\n  topology: {sockets: 1, cores: 4, threads: 1}\n  mode: host-model",
    "Memory": "memory:\n  size: 1GiB\n  max_size: 4GiB\n  slots: 4",
    "Disk": "disks:\n  - source: {type: new, size: 10GiB}\n    bus: virtio\n"
    "  - source: {type: file, path: /var/lib/vmhost/images/data.qcow2}",
    "Nic": "nics:\n  - type: bridge\n    source: br0\n    model: virtio",
    "Cdrom": "cdroms:\n  - iso: /var/lib/vmhost/images/install.iso\n    boot_order: 1",
    "Graphics": "graphics:\n  type: vnc\n  listen: 127.0.0.1",
    "Boot": "boot:\n  firmware: uefi\n  order: [hd, cdrom]",
    "IoThreads": "iothreads:\n  count: 2\n  pins:\n    - {id: 1, host_cpus: 0-1}\ndisks:\n"
    "  - source: {type: block, path: /dev/vg0/data, format: qcow2}\n    iothread: 1",
}
"""A short YAML example per block, shown by `vmhost explain`."""


class UnknownField(ValueError):
    """`vmhost explain` was asked about a path the spec does not have."""


def explain(path: str) -> str:
    """A field's type, default and meaning, and the fields of the block(s) it holds, like `kubectl explain`."""
    models: list[type[BaseModel]] = [VMSpec]
    field: FieldInfo | None = None
    walked: list[str] = []
    for part in [p for p in path.split(".") if p] if path else []:
        found = [(model, model.model_fields[part]) for model in models if part in model.model_fields]
        if not found:
            known = sorted({name for model in models for name in model.model_fields})
            where = ".".join(walked) or "the spec"
            raise UnknownField(f"{where} has no field {part!r}; fields: {', '.join(known)}")
        field = found[0][1]
        models = [m for _model, f in found for m in _nested(f.annotation)]
        walked.append(part)
    lines = []
    if field is not None:
        lines += [f"FIELD:   {'.'.join(walked)}", f"TYPE:    {_plain(_type_name(field.annotation))}"]
        lines += [f"DEFAULT: {_plain(_default(field))}", "", " ".join((field.description or "").split()), ""]
    for model in models:
        lines += _block(model)
    return "\n".join(lines).rstrip() + "\n"


def _block(model: type[BaseModel]) -> list[str]:
    lines = [f"{model.__name__}: {' '.join((model.__doc__ or '').split())}"]
    width = max(len(name) for name in model.model_fields)
    for name, field in model.model_fields.items():
        kind, default = _plain(_type_name(field.annotation)), _plain(_default(field))
        lines.append(f"  {name:<{width}}  {kind} ({default if field.is_required() else 'default ' + default})")
        if field.description:
            lines.append(f"  {'':<{width}}    {' '.join(field.description.split())}")
    example = EXAMPLES.get(model.__name__)
    if example:
        lines += ["", "Example:", *(f"  {line}" for line in example.splitlines())]
    return [*lines, ""]


def _plain(markdown: str) -> str:
    """The reference's Markdown cells as terminal text."""
    text = markdown.replace("\\|", "|").replace("`", "").replace("**", "")
    while "](#" in text:
        start, middle = text.index("["), text.index("](#")
        text = text[:start] + text[start + 1 : middle] + text[text.index(")", middle) + 1 :]
    return text

"""Spec blocks that plugins declare: `extensions: {<plugin>: {...}}`, validated by the plugin's own model.

The registry is process-wide, like the installed plugins it reflects: the plugin loader (an upper layer)
registers each enabled plugin's model here, and the spec stays free of any import of plugin code.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails

_models: dict[str, type[BaseModel]] = {}


def register(name: str, model: type[BaseModel]) -> None:
    _models[name] = model


def unregister(name: str) -> None:
    _models.pop(name, None)


def registered() -> dict[str, type[BaseModel]]:
    return dict(_models)


@contextmanager
def only(models: dict[str, type[BaseModel]]) -> Iterator[None]:
    """Exactly these extensions for a while (tests, and loading plugins into a fresh registry)."""
    saved = dict(_models)
    _models.clear()
    _models.update(models)
    try:
        yield
    finally:
        _models.clear()
        _models.update(saved)


def validate_blocks(blocks: dict[str, Any]) -> dict[str, Any]:
    """Each block through its plugin's model; errors carry the block's name in their path."""
    errors: list[InitErrorDetails] = []
    validated: dict[str, Any] = {}
    for name, block in blocks.items():
        model = _models.get(name)
        if model is None:
            installed = ", ".join(sorted(_models)) or "none"
            errors.append(_unknown(name, block, installed))
            continue
        try:
            validated[name] = block if isinstance(block, model) else model.model_validate(block)
        except ValidationError as exc:
            errors.extend(_nested(name, error) for error in exc.errors())
    if errors:
        raise ValidationError.from_exception_data("extensions", errors)
    return validated


def _unknown(name: str, block: Any, installed: str) -> InitErrorDetails:
    message = f"no enabled plugin provides the extension {name!r} (enabled extensions: {installed})"
    return InitErrorDetails(type="value_error", loc=(name,), input=block, ctx={"error": ValueError(message)})


def _nested(name: str, error: Any) -> InitErrorDetails:
    details = InitErrorDetails(type=error["type"], loc=(name, *error["loc"]), input=error["input"])
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details

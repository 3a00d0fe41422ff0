"""The spec's JSON Schema, with the `extensions` blocks of the enabled plugins in it."""

from typing import Any

from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from vmhost.spec import extensions
from vmhost.spec.vm import VMSpec


def spec_json_schema(ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
    schema = VMSpec.model_json_schema(ref_template=ref_template)
    definitions = schema.setdefault("$defs", {})
    blocks = {}
    for name, model in sorted(extensions.registered().items()):
        block = model.model_json_schema(ref_template=ref_template)
        definitions.update(block.pop("$defs", {}))
        blocks[name] = block
    schema["properties"]["extensions"] = {
        "type": "object",
        "description": "Blocks of enabled plugins, one per plugin name (see `vmhost plugins`).",
        "properties": blocks,
        "additionalProperties": False,
    }
    return schema

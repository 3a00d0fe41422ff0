"""JSON merge patch (RFC 7386), the document format of `vmhost update`."""

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Objects merge key by key, null deletes a key, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result

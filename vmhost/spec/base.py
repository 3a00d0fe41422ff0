"""Shared pydantic base for every spec block."""

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SpecModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        """Text and paths end up in XML and on command lines, where control characters break things."""
        texts = value.values() if isinstance(value, dict) else [value]
        for text in texts:
            if isinstance(text, str | Path) and CONTROL_CHARACTERS.search(str(text)):
                raise ValueError("must not contain control characters")
        return value

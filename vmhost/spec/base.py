"""Shared pydantic base for every spec block."""

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)

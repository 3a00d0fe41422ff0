"""Serial console: always present (the CLI attaches to it); optionally logged to a file."""

from pathlib import Path

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.disk import absolute_path


class Console(SpecModel):
    """The serial console."""

    log_file: Path | None = Field(
        None, description="Where the console output is kept; default: a file in vmhost's data directory."
    )

    @field_validator("log_file")
    @classmethod
    def _abs(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

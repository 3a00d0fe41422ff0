"""What vmhost does when a VM stops without being asked to."""

from pydantic import Field, model_validator

from vmhost.spec.base import SpecModel


class RestartBackoff(SpecModel):
    """Restarts wait initial_seconds, doubling each time up to max_seconds; after max_retries vmhost gives up.
    A VM that ran for a minute before it stopped starts again from the first delay."""

    initial_seconds: float = Field(1.0, ge=0.1, le=3600, description="Delay before the first restart.")
    max_seconds: float = Field(60.0, ge=0.1, le=86400, description="Longest delay between restarts.")
    max_retries: int = Field(5, ge=0, le=1000, description="Restarts in a row before vmhost gives up.")

    @model_validator(mode="after")
    def _ordered(self) -> "RestartBackoff":
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be at least initial_seconds")
        return self

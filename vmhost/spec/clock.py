"""Guest clock offset and timers."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class Timer(SpecModel):
    """One guest timer source."""

    name: Literal["rtc", "pit", "hpet", "kvmclock", "hypervclock", "tsc"] = Field(description="Timer.")
    present: bool = Field(True, description="false removes the timer from the guest.")
    tickpolicy: Literal["delay", "catchup", "merge", "discard"] | None = Field(
        None, description="What to do with missed ticks."
    )


class Clock(SpecModel):
    """The guest's real-time clock."""

    offset: Literal["utc", "localtime"] = Field("utc", description="localtime suits Windows guests.")
    timers: list[Timer] = Field(default_factory=list, description="Timer overrides.")

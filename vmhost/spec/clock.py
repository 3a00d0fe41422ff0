"""Guest clock offset and timers."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class Timer(SpecModel):
    name: Literal["rtc", "pit", "hpet", "kvmclock", "hypervclock", "tsc"]
    present: bool = True
    tickpolicy: Literal["delay", "catchup", "merge", "discard"] | None = None


class Clock(SpecModel):
    offset: Literal["utc", "localtime"] = "utc"
    timers: list[Timer] = Field(default_factory=list)

"""Guest clock offset and timers."""

from typing import Literal

from pydantic import Field, model_validator

from vmhost.spec.base import SpecModel


class Timer(SpecModel):
    """One guest timer source."""

    name: Literal["rtc", "pit", "hpet", "kvmclock", "hypervclock", "tsc"] = Field(description="Timer.")
    present: bool = Field(True, description="false removes the timer from the guest.")
    tickpolicy: Literal["delay", "catchup", "merge", "discard"] | None = Field(
        None, description="What to do with missed ticks (rtc: delay/catchup; pit: not merge; none for kvmclock)."
    )
    track: Literal["boot", "guest", "wall", "realtime"] | None = Field(
        None, description="rtc only: the clock it follows; guest keeps time the guest set across pauses."
    )

    @model_validator(mode="after")
    def _policy_fits_timer(self) -> "Timer":
        allowed = TICK_POLICIES.get(self.name, set())
        if self.tickpolicy is not None and self.tickpolicy not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"timer {self.name} does not take tickpolicy {self.tickpolicy} (accepts: {accepted})")
        if self.track is not None and self.name != "rtc":
            raise ValueError(f"only the rtc timer takes track, not {self.name}")
        return self


TICK_POLICIES = {
    "rtc": {"delay", "catchup"},
    "pit": {"delay", "catchup", "discard"},
    "hpet": {"delay", "catchup", "merge", "discard"},
    "tsc": {"delay", "catchup", "merge", "discard"},
}


class Clock(SpecModel):
    """The guest's real-time clock."""

    offset: Literal["utc", "localtime"] = Field("utc", description="localtime suits Windows guests.")
    timers: list[Timer] = Field(default_factory=list, description="Timer overrides.")

"""Host-side steps run while a freshly created domain is still paused (the two-phase start)."""

from collections.abc import Callable

from vmhost.drivers.base import Driver
from vmhost.spec import VMSpec

ActivationStep = Callable[[VMSpec, Driver], None]
"""Called with the VM's spec and the driver; raising aborts the start and rolls it back."""


def step_name(step: ActivationStep) -> str:
    return getattr(step, "__name__", type(step).__name__)

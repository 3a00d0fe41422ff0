"""Admission control: a start is refused before its hypervisor process runs when the host cannot hold the guest.

A start needs the guest's memory plus `vm_memory_overhead` (QEMU's own, for a VM). The host offers its free
memory as the hypervisor reports it, less `memory_reserve` (kept for the host), less what the starts already in
flight were promised. The promises matter with parallel starts: fifty starts that each read the same free memory
would all pass, and QEMU would fail halfway with the host out of memory ("No enough physical memory for guest",
in ZStack's words). A promise lasts until its start has finished; from then on a guest's memory shows in the free
figure as the guest touches it. Memory a running guest has not touched yet is not held back: as Linux itself
does, vmhost lets such memory be promised again (overcommit).

An incoming migration holds its VM's memory from the moment this host accepts it until its QEMU runs here, so
an evacuation that prepares several VMs at once never lands more than the host can hold (and a start meanwhile
does not take that memory); the hold is read from the store, so it outlives an agent restart.

Promises are per process: the agent's operations see each other's, a CLI in local mode at the same time does not.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vmhost.config import HostConfig
from vmhost.drivers.base import HostInfo
from vmhost.errors import HostResourceError
from vmhost.spec import VMSpec
from vmhost.spec.units import MiB

OVERHEAD = {"kvm": 64 * MiB, "tcg": 192 * MiB}
"""vm_memory_overhead when unset, by accelerator: QEMU's own memory beside the guest's; under TCG mostly its
translated-code cache (a booted 128 MiB tiny guest's QEMU holds ~210 MiB here, a 1 GiB one ~235 MiB)."""


@dataclass(frozen=True)
class Demand:
    """What one start takes from the host's free memory."""

    guest: int
    """The guest's memory at boot; 0 for hugepages-backed memory, which comes from the hugepage pool."""
    overhead: int

    @property
    def total(self) -> int:
        return self.guest + self.overhead


def demand(spec: VMSpec, config: HostConfig) -> Demand:
    """A container's memory is its limit, with no hypervisor process beside it: no overhead."""
    guest = 0 if spec.memory.hugepages else spec.memory.size
    if spec.kind != "vm":
        return Demand(guest=guest, overhead=0)
    overhead = config.vm_memory_overhead
    return Demand(guest=guest, overhead=OVERHEAD[spec.accel or config.accel] if overhead is None else overhead)


@dataclass(frozen=True)
class Offer:
    """What the host can give a start at that moment."""

    free: int
    reserve: int
    promised: int
    """To the starts in flight."""
    awaited: int = 0
    """By incoming migrations accepted here whose VM has no process here yet."""

    @property
    def left(self) -> int:
        return self.free - self.reserve - self.promised - self.awaited


class Admission:
    """The memory promised to the starts in flight in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._promised: dict[object, int] = {}

    @contextmanager
    def admitted(
        self, spec: VMSpec, host: Callable[[], HostInfo], config: HostConfig, awaited: int = 0
    ) -> Iterator[None]:
        """Promise the start's memory for the block, or raise HostResourceError (409) naming the numbers;
        `awaited` is the memory of the incoming migrations that have yet to bring their VMs.

        The host is asked before taking the lock, so parallel starts do not queue behind each other's libvirt
        call; promises are counted under it, so no two starts are given the same memory.
        """
        need = demand(spec, config)
        free = host().memory_available
        with self._lock:
            promised = sum(self._promised.values())
            offer = Offer(free=free, reserve=config.memory_reserve, promised=promised, awaited=awaited)
            if need.total > offer.left:
                raise HostResourceError(_refusal(spec.name, need, offer))
            promise = object()
            self._promised[promise] = need.total
        try:
            yield
        finally:
            with self._lock:
                del self._promised[promise]


def _refusal(name: str, need: Demand, offer: Offer) -> str:
    """Every number the decision used, in MiB, and the config keys that set them."""
    needs = f"{_mib(need.guest)} of guest memory"
    if need.overhead:
        needs += f" + {_mib(need.overhead)} vm_memory_overhead = {_mib(need.total)}"
    offered = f"the host has {_mib(offer.free)} free, less {_mib(offer.reserve)} memory_reserve"
    if offer.promised:
        offered += f" and {_mib(offer.promised)} promised to starts in flight"
    if offer.awaited:
        offered += f" and {_mib(offer.awaited)} held for incoming migrations"
    return (
        f"not enough host memory to start {name}: it needs {needs}; {offered}, which leaves {_mib(max(offer.left, 0))}"
    )


def _mib(size: int) -> str:
    return f"{size // MiB}MiB"

"""The plan of an update: the difference between the stored spec and the patched one, change by change, each
classified before anything is touched, like `terraform plan`.

offline    the VM is stopped: the change goes into its definition now (it runs with it at the next start);
live       applied to the running VM now (vmhost's own metadata, or with --live a hot-plug the driver can do);
next-boot  stored and defined now, seen by the guest after the next start (`get` lists it under `pending`);
refused    not possible as asked (the reason names the capability, ceiling or rule): then nothing is applied.

NICs are matched by MAC, disks and CD-ROM drives by target, so paths read `nics[52:54:00:12:34:56].model`,
`disks[vdb].source.size`, `cdroms[sda].iso`; other lists change whole.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from vmhost.drivers.base import Capability
from vmhost.spec.units import format_size, parse_size

How = Literal["offline", "live", "next-boot", "refused"]
Act = Literal["attach-nic", "detach-nic", "vcpus", "memory", "grow-disk", "media", "resize-offline"]

METADATA = frozenset({"description", "labels", "restart_policy", "restart_backoff", "autostart", "startup"})
"""What only vmhost reads (the hypervisor's definition merely carries it): applies at once, even while running."""
KEYED = {"nics": "mac", "disks": "target", "cdroms": "target"}
IDENTITY = ("name", "uuid")
MASK = "********"
ADD_LIVE = "applied at the next start; add --live to apply it to the running VM now"


@dataclass(frozen=True)
class Action:
    """What the apply does for one change besides redefining: a call on the running VM, or an offline resize."""

    act: Act
    key: str = ""
    """The NIC's MAC or the disk's or drive's target."""
    value: int = 0
    """vCPU count, or a size in bytes."""
    before: int = 0
    """The value before (to undo a vCPU, memory or offline disk change)."""

    def view(self) -> dict[str, Any]:
        return {"act": self.act, "key": self.key, "value": self.value, "before": self.before}


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any
    how: How
    reason: str = ""
    action: Action | None = None

    def view(self) -> dict[str, Any]:
        """Operator-facing: secrets masked, the internal action left out."""
        return {
            "path": self.path,
            "before": _masked(self.path, self.before),
            "after": _masked(self.path, self.after),
            "how": self.how,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class UpdateResult:
    """The plan and whether it was applied (a dry run, or a plan with nothing in it, applies nothing)."""

    name: str
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    dry_run: bool = False

    @property
    def refused(self) -> list[Change]:
        return [change for change in self.changes if change.how == "refused"]

    @property
    def message(self) -> str:
        if not self.changes:
            return "nothing to change"
        if self.refused:
            return f"{len(self.refused)} of {len(self.changes)} changes refused: nothing was applied"
        return f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''} " + (
            "applied" if self.applied else "planned"
        )

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changes": [change.view() for change in self.changes],
            "applied": self.applied,
            "dry_run": self.dry_run,
            "message": self.message,
        }


OWNED_TYPES = ("new", "overlay", "image")
"""Disk sources vmhost made (an image disk is an owned overlay on a store image)."""


@dataclass(frozen=True)
class Context:
    """What classification needs to know about the VM beyond its two specs."""

    running: bool
    live: bool
    driver: str
    capabilities: frozenset[Capability]
    since_boot: dict[str, Any] = field(default_factory=dict)
    """The record's since_boot: the value each changed path had when the running VM booted."""
    disk_size: Callable[[str], int | None] = lambda _target: None
    """Current virtual size of an owned disk by target (an overlay of its base's size records none)."""


def build(before: dict[str, Any], after: dict[str, Any], ctx: Context) -> list[Change]:
    """Every change from the stored spec to the patched one (both as stored: secrets included), classified."""
    return [_classify(Diff(path, a, b), before, ctx) for path, a, b in differences(before, after)]


# ---- the difference ---------------------------------------------------------------------------------


def differences(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, before, after) of each change; objects key by key, the keyed lists element by element."""
    if old == new:
        return
    if not (isinstance(old, dict) and isinstance(new, dict)):
        yield path, old, new
        return
    for key in [*old, *(k for k in new if k not in old)]:
        sub = f"{path}.{key}" if path else key
        a, b = old.get(key), new.get(key)
        if not path and key in KEYED and isinstance(a, list) and isinstance(b, list):
            yield from _keyed(key, KEYED[key], a, b)
        else:
            yield from differences(a, b, sub)


def _keyed(name: str, key: str, old: list[Any], new: list[Any]) -> Iterator[tuple[str, Any, Any]]:
    before = {str(item.get(key)): item for item in old}
    after = {str(item.get(key)): item for item in new}
    for item_key, item in after.items():
        if item_key not in before:
            yield f"{name}[{item_key}]", None, item
    for item_key, item in before.items():
        if item_key not in after:
            yield f"{name}[{item_key}]", item, None
    for item_key in (k for k in after if k in before):
        yield from _element(name, item_key, before[item_key], after[item_key])
    kept_before, kept_after = [k for k in before if k in after], [k for k in after if k in before]
    if kept_before != kept_after:
        yield f"{name} order", kept_before, kept_after


def _element(name: str, item_key: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """An owned disk's source is one change (its size alone, or the whole source when more than that changed)."""
    path = f"{name}[{item_key}]"
    source_a, source_b = old.get("source", {}), new.get("source", {})
    if name == "disks" and source_a.get("type") in OWNED_TYPES and source_a != source_b:
        only_size = {**source_a, "size": None} == {**source_b, "size": None}
        if only_size:
            yield f"{path}.source.size", source_a.get("size"), source_b.get("size")
        else:
            yield f"{path}.source", source_a, source_b
        old, new = {**old, "source": None}, {**new, "source": None}
    yield from differences(old, new, path)


# ---- classification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diff:
    path: str
    before: Any
    after: Any

    @property
    def root(self) -> str:
        return self.path.split(".", maxsplit=1)[0].split("[", maxsplit=1)[0]

    @property
    def key(self) -> str:
        """The MAC or target in `nics[...]`, `disks[...]`, `cdroms[...]`."""
        return self.path.split("[", maxsplit=1)[1].split("]", maxsplit=1)[0]

    def change(self, how: How, reason: str, action: Action | None = None) -> Change:
        return Change(self.path, self.before, self.after, how, reason, action)


def _classify(diff: Diff, document: dict[str, Any], ctx: Context) -> Change:
    path = diff.path
    if diff.root in IDENTITY:
        return diff.change("refused", "cannot be changed by update")
    if path.startswith("disks[") and path.endswith(("].source", "].source.size")):
        return _disk_source(diff, ctx)
    if path.startswith("disks[") and path.endswith("]") and diff.after is None and ctx.running:
        return _owned_disk_removed(diff)
    if not ctx.running:
        return diff.change("offline", "the VM is stopped: it runs with this at its next start")
    if diff.root in METADATA:
        return diff.change("live", "vmhost's own setting: applies now")
    if path.startswith("nics[") and path.endswith("]"):
        act: Act = "attach-nic" if diff.before is None else "detach-nic"
        return _live_or_next(diff, ctx, Capability.NIC_HOTPLUG, Action(act, diff.key))
    if path == "cpu.vcpus":
        return _vcpus(diff, document, ctx)
    if path == "memory.size":
        return _memory(diff, document, ctx)
    if path.startswith("cdroms[") and path.endswith("].iso"):
        return _live_or_next(diff, ctx, Capability.MEDIA_CHANGE, Action("media", diff.key))
    return diff.change("next-boot", "applied at the next start")


def _live_or_next(diff: Diff, ctx: Context, capability: Capability, action: Action) -> Change:
    if not ctx.live:
        return diff.change("next-boot", ADD_LIVE)
    if capability not in ctx.capabilities:
        return diff.change("refused", f"the {ctx.driver} driver does not support {capability.value}")
    return diff.change("live", f"{capability.value}: applied to the running VM now", action)


def booted(path: str, document: dict[str, Any], ctx: Context) -> Any:
    """What the running VM booted with at `path`: recorded when that path changed since, else the stored value."""
    entry = ctx.since_boot.get(path)
    if entry is not None:
        return entry["booted"]
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _vcpus(diff: Diff, document: dict[str, Any], ctx: Context) -> Change:
    after = diff.after
    change = _live_or_next(diff, ctx, Capability.VCPU_HOTPLUG, Action("vcpus", "", after, diff.before))
    if change.how != "live":
        return change
    ceiling = booted("cpu.max_vcpus", document, ctx)
    if ceiling is None:
        boot = booted("cpu.vcpus", document, ctx)
        if after > boot:
            why = f"the VM booted without cpu.max_vcpus, so it cannot have more than its {boot} boot vCPUs live"
            return diff.change("refused", why)
    elif after > ceiling:
        return diff.change("refused", f"{after} vCPUs is above the hotplug ceiling cpu.max_vcpus = {ceiling}")
    return change


def _memory(diff: Diff, document: dict[str, Any], ctx: Context) -> Change:
    after = parse_size(diff.after)
    action = Action("memory", "", after, parse_size(diff.before))
    change = _live_or_next(diff, ctx, Capability.MEMORY_HOTPLUG, action)
    if change.how != "live":
        return change
    boot = parse_size(booted("memory.size", document, ctx))
    if after <= boot:
        if not booted("memory.balloon", document, ctx):
            return diff.change("refused", "the VM booted without memory.balloon: it cannot shrink live")
        return diff.change("live", f"balloon within the boot size {format_size(boot)}", change.action)
    ceiling, slots = _bytes(booted("memory.max_size", document, ctx)), booted("memory.slots", document, ctx)
    if not ceiling or not slots:
        why = (
            f"{format_size(after)} is above the boot size {format_size(boot)}, and the VM booted without "
            "memory.max_size and memory.slots (no memory hotplug)"
        )
        return diff.change("refused", why)
    if after > ceiling:
        why = f"{format_size(after)} is above the hotplug ceiling memory.max_size = {format_size(ceiling)}"
        return diff.change("refused", why)
    return diff.change("live", f"memory hotplug up to memory.max_size = {format_size(ceiling)}", change.action)


def _disk_source(diff: Diff, ctx: Context) -> Change:
    target = diff.key
    if diff.path.endswith("].source"):
        why = f"the disk vmhost created as {target} can only grow (source.size); remove it and add a new one instead"
        return diff.change("refused", why)
    after = _bytes(diff.after)
    current = _bytes(diff.before) if diff.before is not None else ctx.disk_size(target)
    if after is None or current is None:
        return diff.change("refused", f"the size of {target} can only be set to a larger size")
    if after < current:
        why = f"shrinking {target} from {format_size(current)} to {format_size(after)} would cut off the guest's data"
        return diff.change("refused", why)
    if after == current:
        return diff.change("next-boot" if ctx.running else "offline", "the image already has this size")
    if not ctx.running:
        return diff.change("offline", "grown with qemu-img", Action("resize-offline", target, after, current))
    if not ctx.live:
        return diff.change("refused", "a running VM's disk grows live: add --live (or stop the VM first)")
    return _live_or_next(diff, ctx, Capability.DISK_RESIZE, Action("grow-disk", target, after, current))


def _owned_disk_removed(diff: Diff) -> Change:
    """The running guest holds an owned image open: it may not be deleted under it (detach-disk unplugs first)."""
    if diff.before.get("source", {}).get("type") in OWNED_TYPES:
        why = "the running VM holds this disk vmhost created: detach it (disks/detach) or stop the VM first"
        return diff.change("refused", why)
    return diff.change("next-boot", "applied at the next start")


def _bytes(size: Any) -> int | None:
    return None if size is None else parse_size(size)


def _masked(path: str, value: Any) -> Any:
    if value is None:
        return None
    if path.endswith(("password", "password_hash")):
        return MASK
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list):  # cloud_init.users[...] holds password hashes
        return [_masked(path, item) for item in value]
    return value


def since_boot(changes: list[Change], current: dict[str, Any]) -> dict[str, Any]:
    """The record's since_boot after a running VM took these changes: the boot value of each path changed,
    and whether the guest still waits for it (pending); a path back at its boot value is dropped."""
    result = dict(current)
    for change in changes:
        if Diff(change.path, None, None).root in METADATA:
            continue
        entry = result.get(change.path, {"booted": change.before})
        if change.after == entry["booted"]:
            result.pop(change.path, None)
        else:
            result[change.path] = {"booted": entry["booted"], "pending": change.how == "next-boot"}
    return result


def pending(record_since_boot: dict[str, Any]) -> list[str]:
    """Paths stored and defined but not yet seen by the running guest."""
    return sorted(path for path, entry in record_since_boot.items() if entry.get("pending"))

"""Plan, then apply, on the command line: the plan as a table (like `terraform plan`), then what was done; and the
convenience verbs (nic attach/detach, set-vcpus, set-memory, disk resize, cdrom insert/eject), each a merge patch
built from the VM's spec and sent through the same `update`."""

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vmhost.cli.backend import Backend
from vmhost.engine.operations import live_patches
from vmhost.spec.load import read_document
from vmhost.spec.nic import generate_mac

NameArg = Annotated[str, typer.Argument(help="VM name or UUID.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Only print the plan; change nothing.")]
SYMBOLS = {"offline": "~", "live": "~", "next-boot": "~", "refused": "!"}
STYLES = {"offline": "cyan", "live": "green", "next-boot": "yellow", "refused": "bold red"}
Connect = Callable[[], AbstractContextManager[Backend]]


def plan_table(changes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("", "path", "before", "after", "how", "reason"):
        table.add_column(column, overflow="fold")
    for change in changes:
        before, after = change["before"], change["after"]
        symbol = "+" if before is None else "-" if after is None else SYMBOLS[change["how"]]
        how = Text(change["how"], style=STYLES[change["how"]])
        cells = [Text(cell) for cell in (symbol, change["path"], _value(before), _value(after))]
        table.add_row(*cells, how, Text(change["reason"]))
    return table


def show_and_apply(
    backend: Backend, out: Console, err: Console, name: str, patch: dict[str, Any], *, live: bool, dry_run: bool
) -> None:
    """Print the plan; refuse (exit 2) when anything in it is refused; apply it unless a dry run."""
    plan = backend.update(name, patch, live=live, dry_run=True)
    if not plan["changes"]:
        out.print(f"{name}: nothing to change", markup=False)
        return
    out.print(plan_table(plan["changes"]))
    refused = [change for change in plan["changes"] if change["how"] == "refused"]
    if refused:
        err.print(f"error: {plan['message']}", markup=False, highlight=False)
        raise typer.Exit(2)
    if dry_run:
        out.print(f"dry run: {plan['message']}, nothing applied", markup=False)
        return
    done = backend.update(name, patch, live=live)
    if not done["changes"]:
        out.print(f"{name}: nothing to change", markup=False)
        return
    counts = Counter(change["how"] for change in done["changes"])
    summary = ", ".join(f"{count} {how}" for how, count in counts.items())
    pending = " (pending until the next start: vmhost get shows them)" if counts["next-boot"] else ""
    out.print(f"updated {done['name']}: {summary}{pending}", markup=False)


def register(app: typer.Typer, connect: Connect, out: Console, err: Console) -> None:
    def verb(name: str, build: Callable[[dict[str, Any]], dict[str, Any]], dry_run: bool) -> None:
        with connect() as backend:
            patch = build(backend.get(name))
            show_and_apply(backend, out, err, name, patch, live=True, dry_run=dry_run)

    nic = typer.Typer(help="NICs of a VM: hot-plugged while it runs, in its definition always.", no_args_is_help=True)

    @nic.command("attach")
    def nic_attach(
        name: NameArg,
        source: Annotated[str, typer.Option("--source", help="Bridge, libvirt network or host NIC.")],
        kind: Annotated[str, typer.Option("--type", help="bridge, network or direct.")] = "bridge",
        mac: Annotated[str | None, typer.Option("--mac", help="Default: a new 52:54:00 address.")] = None,
        model: Annotated[str, typer.Option("--model", help="virtio, e1000 or rtl8139.")] = "virtio",
        dry_run: DryRunOption = False,
    ) -> None:
        """Add a NIC, validated as at create (bridge exists, MAC unique)."""
        new = {"type": kind, "source": source, "mac": mac or generate_mac(), "model": model}
        verb(name, lambda spec: live_patches.attach_nic(spec, new), dry_run)

    @nic.command("detach")
    def nic_detach(
        name: NameArg, mac: Annotated[str, typer.Argument(help="MAC of the NIC.")], dry_run: DryRunOption = False
    ) -> None:
        """Remove a NIC; a running guest must release it first."""
        verb(name, lambda spec: live_patches.detach_nic(spec, mac), dry_run)

    @app.command("set-vcpus")
    def set_vcpus(
        name: NameArg, count: Annotated[int, typer.Argument(help="vCPUs.")], dry_run: DryRunOption = False
    ) -> None:
        """Set the vCPU count: live up to cpu.max_vcpus while running."""
        verb(name, lambda spec: live_patches.set_vcpus(spec, count), dry_run)

    @app.command("set-memory")
    def set_memory(
        name: NameArg, size: Annotated[str, typer.Argument(help="e.g. 512MiB.")], dry_run: DryRunOption = False
    ) -> None:
        """Set the memory: balloon below the boot size, DIMM hotplug up to memory.max_size while running."""
        verb(name, lambda spec: live_patches.set_memory(spec, size), dry_run)

    disk = typer.Typer(help="Disks of a VM.", no_args_is_help=True)

    @disk.command("resize")
    def disk_resize(
        name: NameArg,
        target: Annotated[str, typer.Argument(help="Disk target, e.g. vdb.")],
        size: Annotated[str, typer.Argument(help="New size, e.g. 2GiB (grow only).")],
        dry_run: DryRunOption = False,
    ) -> None:
        """Grow a disk vmhost created: block resize while running, qemu-img while stopped."""
        verb(name, lambda spec: live_patches.resize_disk(spec, target, size), dry_run)

    @disk.command("attach")
    def disk_attach(
        name: NameArg,
        file: Annotated[Path, typer.Option("-f", "--file", help="The disk, as in a spec's `disks` (JSON or YAML).")],
    ) -> None:
        """Add a disk, hot-plugged when the VM runs (a `new` one is created first): `POST /v1/vms/{vm}/disks`."""
        with connect() as backend:
            disk = read_document(file)
            if not isinstance(disk, dict):
                err.print("error: a disk must be an object, as in a spec's disks list", markup=False, highlight=False)
                raise typer.Exit(2)
            target = backend.attach_disk(name, disk)
        out.print(f"attached {target} to {name}", markup=False)

    @disk.command("detach")
    def disk_detach(name: NameArg, target: Annotated[str, typer.Argument(help="Disk target, e.g. vdb.")]) -> None:
        """Remove a disk; a running guest must release it first (`POST /v1/vms/{vm}/disks/detach`)."""
        with connect() as backend:
            backend.detach_disk(name, target)
        out.print(f"detached {target} from {name}", markup=False)

    cdrom = typer.Typer(help="CD-ROM media of a VM.", no_args_is_help=True)

    @cdrom.command("insert")
    def cdrom_insert(
        name: NameArg,
        target: Annotated[str, typer.Argument(help="Drive target, e.g. sda.")],
        iso: Annotated[str, typer.Argument(help="Absolute path of the ISO image.")],
        dry_run: DryRunOption = False,
    ) -> None:
        """Insert (or change) the media of an existing drive."""
        verb(name, lambda spec: live_patches.insert_media(spec, target, iso), dry_run)

    @cdrom.command("eject")
    def cdrom_eject(
        name: NameArg, target: Annotated[str, typer.Argument(help="Drive target.")], dry_run: DryRunOption = False
    ) -> None:
        """Eject the media of a drive."""
        verb(name, lambda spec: live_patches.eject_media(spec, target), dry_run)

    app.add_typer(nic, name="nic")
    app.add_typer(disk, name="disk")
    app.add_typer(cdrom, name="cdrom")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

"""`vmhost snapshot create|list|revert|delete`: the same from the local engine and an agent."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

import typer
from rich.console import Console

from vmhost.cli import listing
from vmhost.cli.backend import Backend
from vmhost.cli.output import human_time, print_json

NameArg = Annotated[str, typer.Argument(help="VM name or UUID.")]
SnapArg = Annotated[str, typer.Argument(help="Snapshot name: 1-63 of A-Z a-z 0-9 . _ - (not first . _ -).")]
JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
COLUMNS = ["name", "kind", "vm_state", "created"]


def register(app: typer.Typer, backend: Callable[[], AbstractContextManager[Backend]], out: Console) -> None:
    group = typer.Typer(help="Snapshots: full (disks + memory) or disk-only (external qcow2 overlays).")
    app.add_typer(group, name="snapshot")

    @group.command("create")
    def create(
        name: NameArg,
        snapshot: SnapArg,
        disk_only: Annotated[
            bool, typer.Option("--disk-only", help="External overlays, crash-consistent, no memory state.")
        ] = False,
        quiesce: Annotated[
            bool, typer.Option("--quiesce", help="Freeze the guest's filesystems through its QEMU guest agent.")
        ] = False,
    ) -> None:
        """Take a snapshot of a running or stopped VM."""
        with backend() as connection:
            taken = connection.create_snapshot(name, snapshot, disk_only=disk_only, quiesce=quiesce)
        out.print(f"took {taken['kind']} snapshot {snapshot} of {name}", markup=False)

    @group.command("list")
    def list_(name: NameArg, as_json: JsonOption = False) -> None:
        """A VM's snapshots, oldest first."""
        with backend() as connection:
            rows = connection.list_snapshots(name)
        if as_json:
            print_json(out, rows)
            return
        table = [{**row, "created": human_time(row["created_at"])} for row in rows]
        listing.render(table, COLUMNS, as_json=False, parsable=False, header=True, console=out)

    @group.command("revert")
    def revert(name: NameArg, snapshot: SnapArg) -> None:
        """Bring a snapshot back (a running VM keeps running; a disk-only revert restarts it)."""
        with backend() as connection:
            result = connection.revert_snapshot(name, snapshot)
        out.print(f"reverted {name} to {snapshot} ({result['state']})", markup=False)

    @group.command("delete")
    def delete(name: NameArg, snapshot: SnapArg) -> None:
        """Delete a snapshot; a disk-only one is merged back into the disk first."""
        with backend() as connection:
            connection.delete_snapshot(name, snapshot)
        out.print(f"deleted snapshot {snapshot} of {name}", markup=False)

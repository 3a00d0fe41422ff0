"""`vmhost migrate` and `vmhost evacuate`: move one VM, or every running VM of this host, to other agents; from
the local engine or through an agent alike.

The progress bar (on a terminal, on stderr) is fed by the migration's events: `phase memory 42% remaining
12 MiB downtime 30 ms` moves the bar, any other line (`preparing URL`, `copying disk vda to URL`) names the step.
"""

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from vmhost.api.peer import agent_url
from vmhost.cli import listing
from vmhost.cli.backend import Backend
from vmhost.cli.output import print_json
from vmhost.engine.peer import MigrationRequest
from vmhost.errors import VmhostError

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
PHASE = re.compile(r"phase (?P<phase>\S+) (?P<percent>\d+(?:\.\d+)?)% remaining (?P<remaining>\d+) MiB")
DOWNTIME = re.compile(r"downtime (?P<downtime>\d+) ms")
FLAGS = {
    "bandwidth_mib": "--bandwidth",
    "timeout": "--timeout",
    "stall_timeout": "--stall-timeout",
}
"""MigrationRequest fields -> the flags that set them (a refused value names the flag)."""
COLUMNS = ["vm", "to", "result"]

Bandwidth = Annotated[
    int | None, typer.Option("--bandwidth", help="MiB/s at most for the memory (and disk) stream.", show_default=False)
]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", help="Seconds in all before it is aborted (default: config migration_timeout)."),
]
StallTimeout = Annotated[
    float | None,
    typer.Option(
        "--stall-timeout", help="Seconds without progress before it is aborted (default: migration_stall_timeout)."
    ),
]
AutoConverge = Annotated[
    bool, typer.Option("--auto-converge", help="Slow the guest's vCPUs down until its memory converges.")
]
PostCopy = Annotated[
    bool, typer.Option("--post-copy", help="Switch to post-copy if pre-copy does not converge (live only).")
]
CopyStorage = Annotated[
    bool,
    typer.Option("--copy-storage", help="Copy the VM's own disks too (else they must be on storage both hosts see)."),
]


def register(
    app: typer.Typer, backend: Callable[[], AbstractContextManager[Backend]], out: Console, err: Console
) -> None:
    """Add `migrate` and `evacuate` to the main app (vmhost/cli/main.py)."""

    @app.command()
    def migrate(
        name: Annotated[str, typer.Argument(help="VM name or UUID.")],
        to: Annotated[str, typer.Option("--to", help="The destination agent's URL (https://HOST:PORT).")],
        offline: Annotated[
            bool, typer.Option("--offline", help="Move a stopped VM: its spec and disks, no memory.")
        ] = False,
        copy_storage: CopyStorage = False,
        bandwidth: Bandwidth = None,
        timeout: Timeout = None,
        stall_timeout: StallTimeout = None,
        auto_converge: AutoConverge = False,
        post_copy: PostCopy = False,
        as_json: JsonOption = False,
    ) -> None:
        """Move a VM to another vmhost agent: live while it runs, or --offline when stopped. On any failure
        before the switch-over the VM stays here as it was, and nothing is left at the destination."""
        fields = {
            "offline": offline,
            "copy_storage": copy_storage,
            "bandwidth_mib": bandwidth,
            "timeout": timeout,
            "stall_timeout": stall_timeout,
            "auto_converge": auto_converge,
            "post_copy": post_copy,
        }
        request = {"to": _url(to, err), **_request(fields, err)}
        began = time.monotonic()
        with backend() as connected, _progress_bar(err, name) as progress:
            result = connected.migrate(name, request, progress)
        if as_json:
            print_json(out, result)
            return
        seconds = time.monotonic() - began
        out.print(f"migrated {result['name']} to {result['to']} ({seconds:.1f}s)", markup=False, highlight=False)

    @app.command()
    def evacuate(
        to: Annotated[str, typer.Option("--to", help="Destination agents' URLs, comma-separated: round-robin.")],
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", min=1, help="Migrations at once (default: config migration_concurrency)."),
        ] = None,
        copy_storage: CopyStorage = False,
        bandwidth: Bandwidth = None,
        timeout: Timeout = None,
        stall_timeout: StallTimeout = None,
        auto_converge: AutoConverge = False,
        post_copy: PostCopy = False,
        as_json: JsonOption = False,
    ) -> None:
        """Live-migrate every running VM of this host away, several at a time, and report each one (exit 1 if
        any stayed)."""
        urls = [_url(url, err) for url in to.split(",") if url.strip()]
        if not urls:
            _usage(err, "--to needs at least one agent URL")
        fields = {
            "copy_storage": copy_storage,
            "bandwidth_mib": bandwidth,
            "timeout": timeout,
            "stall_timeout": stall_timeout,
            "auto_converge": auto_converge,
            "post_copy": post_copy,
        }
        request = {"to": urls, "concurrency": concurrency, **_request(fields, err)}
        with backend() as connected:
            result = connected.evacuate(request, lambda line: err.print(line, markup=False, highlight=False))
        if as_json:
            print_json(out, result)
        else:
            rows = evacuation_rows(result)
            if rows:
                listing.render(rows, COLUMNS, as_json=False, parsable=False, header=True, console=out)
            out.print(evacuation_summary(result), markup=False, highlight=False)
        if result["failed"]:
            raise typer.Exit(1)


def evacuation_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per VM: where it went, and `migrated` or why it stayed."""
    return [{"vm": vm["vm"], "to": vm["to"], "result": "migrated" if vm["ok"] else vm["error"]} for vm in result["vms"]]


def evacuation_summary(result: dict[str, Any]) -> str:
    total = result["migrated"] + result["failed"]
    stayed = f", {result['failed']} stayed" if result["failed"] else ""
    return f"migrated {result['migrated']} of {total} VMs{stayed}"


def _url(url: str, err: Console) -> str:
    try:
        return agent_url(url)
    except VmhostError as exc:
        _usage(err, f"--to: {exc.message}")


def _request(fields: dict[str, Any], err: Console) -> dict[str, Any]:
    """The flags as MigrationRequest takes them, checked here so a bad value names its flag (exit 2)."""
    try:
        return MigrationRequest.model_validate(fields).model_dump()
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else ""
        _usage(err, f"{FLAGS.get(field, field)}: {problem['msg'].lower()}")


def _usage(err: Console, message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


@contextmanager
def _progress_bar(err: Console, name: str) -> Iterator[Callable[[str], None]]:
    """A bar on a terminal, moved by the migration's phase lines; nothing otherwise (scripts read stdout)."""
    if not err.is_terminal:
        yield _ignore
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"migrating {name}", total=100, detail="")

        def update(line: str) -> None:
            bar.update(task, **progress_fields(name, line))

        yield update


def progress_fields(name: str, line: str) -> dict[str, Any]:
    """What one progress line changes on the bar: its phase, percent and the remaining/downtime detail."""
    found = PHASE.search(line)
    if found is None:
        return {"description": f"{name}: {line}"}
    detail = f"{found['remaining']} MiB left"
    downtime = DOWNTIME.search(line)
    if downtime is not None:
        detail += f", downtime {downtime['downtime']} ms"
    return {"description": f"{name}: {found['phase']}", "completed": float(found["percent"]), "detail": detail}


def _ignore(_line: str) -> None:
    """No terminal: no bar."""

"""`vmhost` commands. Exit codes: 0 success, 1 error, 2 usage or validation error."""

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from vmhost.cli import listing
from vmhost.cli.console import attach
from vmhost.config import HostConfig, load_config
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.engine import Engine
from vmhost.errors import VmhostError
from vmhost.spec import SpecError, VMSpec, load_spec_file
from vmhost.spec.load import read_document

app = typer.Typer(
    help="vmhost: declarative VMs on one host (create, start, stop, list, console...).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 512)
err = Console(stderr=True, soft_wrap=True, emoji=False)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Host config (TOML). Default: $VMHOST_CONFIG or /etc/vmhost/config.toml."),
]
FileOption = Annotated[Path, typer.Option("-f", "--file", help="Spec document (JSON or YAML).")]
JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
NameArg = Annotated[str, typer.Argument(help="VM name or UUID.")]


class State:
    config_path: Path | None = None


_state = State()


@app.callback()
def main(config: ConfigOption = None) -> None:
    _state.config_path = config


def _fail(message: str, detail: str | None = None, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False)
    if detail:
        err.print(f"  detail: {detail}", markup=False, highlight=False)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SpecError as exc:
        err.print(
            f"error: invalid spec ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''})",
            markup=False,
            highlight=False,
        )
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except VmhostError as exc:
        _fail(exc.message, exc.detail)


def _config() -> HostConfig:
    return load_config(_state.config_path)


@contextmanager
def _engine() -> Iterator[Engine]:
    with _errors():
        config = _config()
        status = err.status("working…") if err.is_terminal else None
        progress: Callable[[str], None] = status.update if status else (lambda m: None)
        engine = Engine(config, LibvirtDriver(config.libvirt_uri, config.accel), progress=progress)
        if status:
            with status:
                yield engine
        else:
            yield engine


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


def _read(path: Path) -> Any:
    with _errors():
        return read_document(path)


@app.command()
def create(
    file: FileOption,
    start: Annotated[bool, typer.Option("--start", "-s", help="Start it too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a VM from a spec: validate, make its disks, define it (and start it with --start)."""
    document = _read(file)
    with _engine() as engine:
        record = engine.create(document, start=start)
        if as_json:
            _print_json(engine.get(record.name))
        else:
            out.print(f"created {record.name} ({record.uuid}){' and started it' if start else ''}", markup=False)


@app.command()
def validate(file: FileOption) -> None:
    """Check a spec without touching the host; print every problem with its path."""
    with _errors():
        spec = load_spec_file(file)
    out.print(f"valid spec for {spec.name}", markup=False)


@app.command("list")
def list_vms(
    filters: Annotated[list[str] | None, typer.Argument(help="field=value filters, e.g. state=running.")] = None,
    output: Annotated[str | None, typer.Option("-o", help="Comma-separated fields.")] = None,
    sort: Annotated[str | None, typer.Option("-s", help="Sort by field[,field]; prefix '-' for descending.")] = None,
    no_header: Annotated[bool, typer.Option("-H", help="No header line.")] = False,
    parsable: Annotated[bool, typer.Option("-p", help="Colon-separated values, no header.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List VMs as a table."""
    with _engine() as engine:
        try:
            fields = listing.parse_fields(output)
            table = listing.rows(engine.list(), filters or [], sort)
        except ValueError as exc:
            _fail(str(exc), code=2)
    listing.render(table, fields, as_json=as_json, parsable=parsable, header=not no_header, console=out)


@app.command()
def get(name: NameArg) -> None:
    """Show a VM as JSON: its spec (secrets masked), a top-level state, runtime facts."""
    with _engine() as engine:
        _print_json(engine.get(name))


@app.command()
def info(name: NameArg) -> None:
    """Runtime information: process, CPU time, uptime, console log, recent operations."""
    with _engine() as engine:
        _print_json(engine.info(name))


@app.command()
def start(name: NameArg) -> None:
    """Start a VM (two-phase: created paused, activation steps, resumed). Starting a running VM succeeds."""
    with _engine() as engine:
        record = engine.start(name)
    out.print(f"started {record.name}", markup=False)


@app.command()
def stop(
    name: NameArg,
    force: Annotated[bool, typer.Option("-F", "--force", help="Destroy at once, no ACPI shutdown.")] = False,
    timeout: Annotated[float | None, typer.Option("-t", "--timeout", help="Seconds to wait before forcing.")] = None,
) -> None:
    """Stop a VM: ACPI shutdown, then force at the deadline. Stopping a stopped VM succeeds."""
    with _engine() as engine:
        result = engine.stop(name, force=force, timeout=timeout)
    messages = {"already-stopped": "was already stopped", "acpi": "shut down", "forced": "forced off"}
    out.print(f"{name} {messages[result.method]} ({result.seconds:.1f}s)", markup=False)


@app.command()
def reboot(
    name: NameArg, force: Annotated[bool, typer.Option("-F", "--force", help="Hard reset instead of ACPI.")] = False
) -> None:
    """Reboot a running VM (ACPI, or a hard reset with -F)."""
    with _engine() as engine:
        engine.reboot(name, force=force)
    out.print(f"rebooting {name}", markup=False)


@app.command()
def kill(name: NameArg) -> None:
    """Power a VM off at once (no shutdown request)."""
    with _engine() as engine:
        engine.kill(name)
    out.print(f"killed {name}", markup=False)


@app.command()
def delete(name: NameArg) -> None:
    """Delete a VM: stop it, remove its definition and the disks vmhost created (never user-supplied ones)."""
    with _engine() as engine:
        engine.delete(name)
    out.print(f"deleted {name}", markup=False)


@app.command()
def update(name: NameArg, file: FileOption) -> None:
    """Change a stopped VM with a JSON merge patch (lists such as disks and nics are replaced whole)."""
    patch = _read(file)
    if not isinstance(patch, dict):
        _fail("an update must be a JSON object", code=2)
    with _engine() as engine:
        record = engine.update(name, patch)
    out.print(f"updated {record.name}", markup=False)


@app.command()
def console(
    name: NameArg,
    log: Annotated[bool, typer.Option("--log", help="Print what the console said so far and exit.")] = False,
) -> None:
    """Attach to the serial console (Ctrl-] leaves), or print its log."""
    with _engine() as engine:
        if log:
            path = engine.console_log_path(name)
            sys.stdout.buffer.write(path.read_bytes() if path.exists() else b"")
            return
        stream = engine.open_console(name)
    err.print(f"connected to {name}; Ctrl-] to leave", markup=False)
    attach(stream)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a VM spec."""
    _print_json(VMSpec.model_json_schema())

"""`vmhost` commands. Exit codes: 0 success, 1 error, 2 usage or validation error."""

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from vmhost.cli import host as host_command
from vmhost.cli import listing, tokens
from vmhost.cli.backend import Backend, LocalBackend
from vmhost.cli.console import attach
from vmhost.client import AgentClient
from vmhost.config import HostConfig, load_config
from vmhost.dialects import DIALECTS, to_spec_document, validate_document
from vmhost.engine.views import select
from vmhost.errors import Unsupported, VmhostError
from vmhost.host.tokens import read_token
from vmhost.plugins import Plugins
from vmhost.plugins.host import build_engine
from vmhost.spec import SpecError, load_spec_file
from vmhost.spec.load import read_document
from vmhost.spec.schema import spec_json_schema

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
DialectOption = Annotated[
    str,
    typer.Option("--dialect", help=f"Input format: {', '.join(DIALECTS)} (vmadm: a SmartOS create payload)."),
]


class State:
    config_path: Path | None = None
    agent: str | None = None
    token: str | None = None


_state = State()


@app.callback()
def main(
    config: ConfigOption = None,
    agent: Annotated[
        str | None, typer.Option("--agent", envvar="VMHOST_AGENT", help="Talk to this agent URL instead of local mode.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="VMHOST_TOKEN", help="Agent token (default: the data dir's).")
    ] = None,
) -> None:
    _state.config_path, _state.agent, _state.token = config, agent, token


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
        count = len(exc.problems)
        err.print(f"error: invalid spec ({count} problem{'s' if count != 1 else ''})", markup=False, highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except Unsupported as exc:
        _fail(f"{exc.message}: {exc.detail}" if exc.detail else exc.message)
    except VmhostError as exc:
        _fail(exc.message, exc.detail)


def _config() -> HostConfig:
    return load_config(_state.config_path)


@contextmanager
def _backend() -> Iterator[Backend]:
    """A remote agent when --agent (or the config's agent_url) names one, else the engine in this process."""
    with _errors():
        config = _config()
        agent_url = _state.agent or config.agent_url
        if agent_url:
            yield _client(config, agent_url)
            return
        status = err.status("working…") if err.is_terminal else None
        progress: Callable[[str], None] = status.update if status else (lambda m: None)
        engine = build_engine(config, _plugins(config), progress=progress)
        if status:
            with status:
                yield LocalBackend(engine)
        else:
            yield LocalBackend(engine)


def _client(config: HostConfig, url: str) -> AgentClient:
    token = _state.token or read_token(config.data_dir)
    if not token:
        raise VmhostError(f"no agent token: pass --token or run as root where {config.data_dir} is readable")
    return AgentClient(url, token)


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
    dialect: DialectOption = "vmhost",
) -> None:
    """Create a VM from a spec: validate, make its disks, define it (and start it with --start)."""
    with _errors():
        document = to_spec_document(_read(file), dialect)
    with _backend() as backend:
        view = backend.create(document, start=start)
    if as_json:
        _print_json(view)
    else:
        out.print(f"created {view['name']} ({view['uuid']}){' and started it' if start else ''}", markup=False)


@app.command()
def validate(file: FileOption, dialect: DialectOption = "vmhost") -> None:
    """Check a spec without touching the host; print every problem with its path.

    With --dialect vmadm, problems are reported as `vmadm validate` does (bad_values, bad_properties,
    missing_properties) and the exit code is vmadm's: 0 valid, 1 invalid.
    """
    if dialect != "vmhost":
        with _errors():
            ok, report = validate_document(_read(file), dialect)
        typer.echo(report, err=not ok or dialect == "vmadm")  # vmadm.js prints even its VALID line on stderr
        raise typer.Exit(0 if ok else 1)
    with _errors():
        _plugins(_config()).register_spec_extensions()
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
    try:
        fields = listing.parse_fields(output)
        selection = listing.parse_filters(filters or [])
    except ValueError as exc:
        _fail(str(exc), code=2)
    with _backend() as backend:
        rows = backend.list_rows()
    try:
        table = select(rows, selection, sort)
    except ValueError as exc:
        _fail(str(exc), code=2)
    listing.render(table, fields, as_json=as_json, parsable=parsable, header=not no_header, console=out)


@app.command()
def get(name: NameArg) -> None:
    """Show a VM as JSON: its spec (secrets masked), a top-level state, runtime facts."""
    with _backend() as backend:
        _print_json(backend.get(name))


@app.command()
def info(name: NameArg) -> None:
    """Runtime information: process, CPU time, uptime, console log, recent operations."""
    with _backend() as backend:
        _print_json(backend.info(name))


@app.command()
def start(name: NameArg) -> None:
    """Start a VM (two-phase: created paused, activation steps, resumed). Starting a running VM succeeds."""
    with _backend() as backend:
        backend.start(name)
    out.print(f"started {name}", markup=False)


@app.command()
def stop(
    name: NameArg,
    force: Annotated[bool, typer.Option("-F", "--force", help="Destroy at once, no ACPI shutdown.")] = False,
    timeout: Annotated[float | None, typer.Option("-t", "--timeout", help="Seconds to wait before forcing.")] = None,
) -> None:
    """Stop a VM: ACPI shutdown, then force at the deadline. Stopping a stopped VM succeeds."""
    with _backend() as backend:
        result = backend.stop(name, force=force, timeout=timeout)
    messages = {
        "already-stopped": "was already stopped",
        "acpi": "shut down",
        "forced": "forced off",
        "killed-process": "forced off by killing its QEMU process",
    }
    out.print(f"{name} {messages[result['method']]} ({result['seconds']:.1f}s)", markup=False)


@app.command()
def reboot(
    name: NameArg, force: Annotated[bool, typer.Option("-F", "--force", help="Hard reset instead of ACPI.")] = False
) -> None:
    """Reboot a running VM (ACPI, or a hard reset with -F)."""
    with _backend() as backend:
        backend.reboot(name, force=force)
    out.print(f"rebooting {name}", markup=False)


@app.command()
def kill(name: NameArg) -> None:
    """Power a VM off at once (no shutdown request)."""
    with _backend() as backend:
        backend.kill(name)
    out.print(f"killed {name}", markup=False)


@app.command()
def delete(name: NameArg) -> None:
    """Delete a VM: stop it, remove its definition and the disks vmhost created (never user-supplied ones)."""
    with _backend() as backend:
        backend.delete(name)
    out.print(f"deleted {name}", markup=False)


@app.command()
def update(name: NameArg, file: FileOption) -> None:
    """Change a stopped VM with a JSON merge patch (lists such as disks and nics are replaced whole)."""
    patch = _read(file)
    if not isinstance(patch, dict):
        _fail("an update must be a JSON object", code=2)
    with _backend() as backend:
        view = backend.update(name, patch)
    out.print(f"updated {view['name']}", markup=False)


@app.command()
def console(
    name: NameArg,
    log: Annotated[bool, typer.Option("--log", help="Print what the console said so far and exit.")] = False,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="With --log: keep printing until it stops.")] = False,
) -> None:
    """Attach to the serial console (Ctrl-] leaves), or print its log (a container's stdout and stderr)."""
    with _backend() as backend:
        if log and follow:
            for chunk in backend.follow_console_log(name):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            return
        if log:
            sys.stdout.buffer.write(backend.console_log(name))
            return
        stream = backend.open_console(name)
    err.print(f"connected to {name}; Ctrl-] to leave", markup=False)
    attach(stream)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default: config, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port (default: config, 7070).")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow plain HTTP on a non-loopback address.")] = False,
) -> None:
    """Run the HTTP agent (REST API, ZStack dialect, console websocket, metrics)."""
    from vmhost.api import server  # noqa: PLC0415 - only `serve` loads FastAPI, uvicorn and libvirtaio

    with _errors():
        config = _config()
        listen = server.Listen(
            host=host or config.listen_host,
            port=port or config.listen_port,
            tls_cert=tls_cert or config.tls_cert,
            tls_key=tls_key or config.tls_key,
            insecure=insecure,
        )
        server.check_listen(listen)
    server.serve(config, listen)


@app.command()
def events(
    name: Annotated[str | None, typer.Argument(help="Only this VM.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events.")] = False,
) -> None:
    """State changes as JSON lines, from the agent (--agent, or the config's listen address)."""
    with _errors():
        config = _config()
        url = _state.agent or config.agent_url or f"http://{config.listen_host}:{config.listen_port}"
        for event in _client(config, url).events(name, follow):
            out.print(json.dumps(event), markup=False, highlight=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a VM spec (with the spec blocks of enabled plugins)."""
    with _errors():
        _plugins(_config()).register_spec_extensions()
    _print_json(spec_json_schema())


@app.command("plugins")
def list_plugins(as_json: JsonOption = False) -> None:
    """Installed plugins: version, plugin API, priority, state (enabled, disabled, refused) and hooks."""
    with _errors():
        statuses = [vars(status) for status in _plugins(_config()).statuses]
    if as_json:
        _print_json(statuses)
        return
    columns = ["name", "version", "api_version", "priority", "state", "hooks", "reason"]
    rows = [{**status, "hooks": ",".join(status["hooks"])} for status in statuses]
    listing.render(rows, columns, as_json=False, parsable=False, header=True, console=out)


_discovered: dict[Path | None, Plugins] = {}


def _plugins(config: HostConfig) -> Plugins:
    """Discovered once per process (per config) and shared by every command."""
    key = _state.config_path
    if key not in _discovered:
        _discovered[key] = Plugins.discover(config)
    return _discovered[key]


def _add_plugin_commands() -> None:
    """`vmhost <plugin> ...` groups, from the plugins the default config enables (the command line is not
    parsed yet); a broken config is left for the command that reads it to report."""
    try:
        plugins = _plugins(load_config())
    except VmhostError:
        return
    for name, group in plugins.cli_groups():
        app.add_typer(group, name=name, help=f"Commands of the {name} plugin.")


app.add_typer(tokens.app, name="token")
host_command.register(app, _backend, out)
_add_plugin_commands()

"""`vmhost` commands. Exit codes: 0 success, 1 error, 2 usage or validation error."""

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from vmhost.api import peer
from vmhost.cli import changes as change_commands
from vmhost.cli import explain as explain_command
from vmhost.cli import fleet as fleet_commands
from vmhost.cli import host as host_command
from vmhost.cli import images as image_commands
from vmhost.cli import listing, output, tokens
from vmhost.cli import migration as migration_commands
from vmhost.cli import snapshots as snapshot_commands
from vmhost.cli.backend import Backend, LocalBackend
from vmhost.cli.console import attach, last_lines, plain_text
from vmhost.client import AgentClient
from vmhost.config import HostConfig, load_config
from vmhost.dialects import DIALECTS, to_spec_document, validate_document
from vmhost.engine.states import VmState
from vmhost.engine.views import FIELDS, check_query
from vmhost.errors import Unavailable, Unsupported, VmhostError
from vmhost.host.tokens import read_token
from vmhost.plugins import Plugins
from vmhost.plugins.host import build_engine
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.load import read_document
from vmhost.spec.schema import spec_json_schema

app = typer.Typer(
    help="vmhost: declarative VMs on one host (create, start, stop, list, console...).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 512)
err = Console(stderr=True, soft_wrap=True, emoji=False)
T = TypeVar("T")
LIST_FIELDS = ", ".join(FIELDS)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Host config (TOML). Default: $VMHOST_CONFIG or /etc/vmhost/config.toml."),
]
FileOption = Annotated[Path, typer.Option("-f", "--file", help="Spec document (JSON or YAML; - reads standard input).")]
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


def _print_version(wanted: bool) -> None:
    if wanted:
        out.print(f"vmhost {package_version('vmhost')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    config: ConfigOption = None,
    agent: Annotated[
        str | None, typer.Option("--agent", envvar="VMHOST_AGENT", help="Talk to this agent URL instead of local mode.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="VMHOST_TOKEN", help="Agent token (default: the data dir's).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")
    ] = False,
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
        engine = build_engine(config, _plugins(config), progress=progress, peers=peer.peers(config))
        if status:
            with status:
                yield LocalBackend(engine)
        else:
            yield LocalBackend(engine)


def _client(config: HostConfig, url: str) -> AgentClient:
    if not url.startswith(("http://", "https://")):
        _fail(f"agent URL {url!r} has no scheme: use http://{url} or https://{url}", code=2)
    token = _state.token or read_token(config.data_dir)
    if not token:
        raise VmhostError(f"no agent token: pass --token or run as root where {config.data_dir} is readable")
    return AgentClient(url, token)


@contextmanager
def _agent() -> Iterator[AgentClient]:
    """For what only an agent serves: --agent, the config's agent_url, else this host's own agent (and when that
    one does not answer, the error says how to name another)."""
    with _errors():
        config = _config()
        named = _state.agent or config.agent_url
        client = _client(config, named or f"http://{config.listen_host}:{config.listen_port}")
        try:
            yield client
        except VmhostError as exc:
            if named or exc.message != f"cannot reach the agent at {client.url}":  # client.py _call's words
                raise
            raise Unavailable(
                f"no agent answers at {client.url}: start one with `vmhost serve` or name one with --agent URL",
                exc.detail,
            ) from None


def _print_json(value: Any) -> None:
    output.print_json(out, value)


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
    payload = _read(file)
    with _backend() as backend:
        # vmadm's image_uuid names an image of the store, except on SmartOS, where imgadm keeps the images
        images = image_commands.lookup(backend) if _config().vm_driver != "smartos" else None
        view = backend.create(to_spec_document(payload, dialect, images), start=start)
    if as_json:
        _print_json(view)
    else:
        out.print(f"created {view['name']} ({view['uuid']}){' and started it' if start else ''}", markup=False)


@app.command()
def validate(
    file: FileOption,
    dialect: DialectOption = "vmhost",
    offline: Annotated[
        bool, typer.Option("--offline", help="Spec checks only, no host checks (a spec written for another host).")
    ] = False,
) -> None:
    """Check a spec as create would, creating nothing: every problem with its path, the host's included
    (bridges, images, disk files) unless --offline.

    With --dialect vmadm, problems are reported as `vmadm validate` does (bad_values, bad_properties,
    missing_properties) and the exit code is vmadm's: 0 valid, 1 invalid.
    """
    if dialect != "vmhost":
        with _errors():
            ok, report = validate_document(_read(file), dialect)
        typer.echo(report, err=not ok or dialect == "vmadm")  # vmadm.js prints even its VALID line on stderr
        raise typer.Exit(0 if ok else 1)
    document = _read(file)
    if offline:
        with _errors():
            _plugins(_config()).register_spec_extensions()
            name = parse_spec(document).name
        out.print(f"valid spec for {name} (host checks skipped)", markup=False)
        return
    with _backend() as backend:
        name = backend.validate(document)
    out.print(f"valid spec for {name} on this host", markup=False)


@app.command("list")
def list_vms(
    filters: Annotated[
        list[str] | None,
        typer.Argument(help=f"field=value filters, e.g. state=running or label.tier=web. Fields: {LIST_FIELDS}."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help=f"Comma-separated fields, from: {LIST_FIELDS}, ip (the guest's addresses)."
        ),
    ] = None,
    sort: Annotated[
        str | None, typer.Option("-s", "--sort", help="Sort by field[,field]; prefix '-' for descending.")
    ] = None,
    no_header: Annotated[bool, typer.Option("-H", "--no-header", help="No header line.")] = False,
    parsable: Annotated[bool, typer.Option("-p", "--parsable", help="Colon-separated values, no header.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List VMs as a table (default fields: name, uuid, kind, driver, state, vcpus, memory)."""
    try:
        fields = listing.parse_fields(output)
        selection = listing.parse_filters(filters or [])
        listing.check_state_filter(selection)
        check_query(selection, sort)
    except ValueError as exc:
        _fail(str(exc), code=2)
    with _backend() as backend:
        table = backend.list_rows(selection, sort, listing.stored_fields(fields))
        if "ip" in fields:
            table = [{**row, "ip": listing.guest_ip(backend.get(row["name"]))} for row in table]
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
        was_running = backend.get(name)["state"] == VmState.RUNNING
        backend.start(name)
    out.print(f"{name} is already running" if was_running else f"started {name}", markup=False)


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
    out.print(f"reset {name}" if force else f"rebooting {name} (ACPI request sent)", markup=False)


@app.command()
def kill(name: NameArg) -> None:
    """Power a VM off at once (no shutdown request)."""
    with _backend() as backend:
        was_stopped = backend.get(name)["state"] in (VmState.STOPPED, VmState.CRASHED, VmState.FAILED)
        backend.kill(name)
    out.print(f"{name} was not running" if was_stopped else f"killed {name}", markup=False)


@app.command()
def pause(name: NameArg) -> None:
    """Freeze a running VM's vCPUs (its memory stays; `resume` continues it)."""
    with _backend() as backend:
        was_paused = backend.get(name)["state"] == VmState.PAUSED
        backend.pause(name)
    out.print(f"{name} is already paused" if was_paused else f"paused {name}", markup=False)


@app.command()
def resume(name: NameArg) -> None:
    """Continue a paused VM."""
    with _backend() as backend:
        was_running = backend.get(name)["state"] == VmState.RUNNING
        backend.resume(name)
    out.print(f"{name} is already running" if was_running else f"resumed {name}", markup=False)


@app.command()
def delete(
    name: NameArg,
    force: Annotated[bool, typer.Option("-F", "--force", help="Delete a VM that is running (it is killed).")] = False,
) -> None:
    """Delete a VM: remove its definition and the disks vmhost created (never user-supplied ones). A running VM
    needs --force, or a yes on a terminal."""
    with _backend() as backend:
        state = backend.get(name)["state"]
        if state not in (VmState.STOPPED, VmState.CRASHED, VmState.FAILED) and not force:
            question = f"{name} is {state}: kill and delete it?"
            if not (sys.stdin.isatty() and typer.confirm(question, err=True)):
                _fail(f"{name} is {state}: stop it first, or pass --force to delete it anyway")
        backend.delete(name)
    out.print(f"deleted {name}", markup=False)


@app.command()
def update(
    name: NameArg,
    file: FileOption,
    live: Annotated[bool, typer.Option("--live", help="Apply what the driver can to the running VM now.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the plan; change nothing.")] = False,
) -> None:
    """Change a VM with a JSON merge patch (lists are replaced whole): print the plan, then apply it."""
    patch = _read(file)
    if not isinstance(patch, dict):
        _fail("an update must be a JSON object", code=2)
    with _backend() as backend:
        change_commands.show_and_apply(backend, out, err, name, patch, live=live, dry_run=dry_run)


@app.command()
def console(
    name: NameArg,
    log: Annotated[bool, typer.Option("--log", help="Print what the console said so far and exit.")] = False,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="With --log: keep printing until it stops.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", min=1, help="With --log: only the last N lines.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="With --log: keep terminal control sequences.")] = False,
) -> None:
    """Attach to the serial console (Ctrl-] leaves), or print its log (a container's stdout and stderr); each
    boot of a VM starts with a `--- vmhost: boot of NAME at TIME ---` line."""
    if tail is not None and (follow or not log):
        _fail("--tail goes with --log, without --follow", code=2)
    clean = (lambda data: data) if raw else plain_text
    with _backend() as backend:
        if log and follow:
            for chunk in backend.follow_console_log(name):
                sys.stdout.buffer.write(clean(chunk))
                sys.stdout.buffer.flush()
            return
        if log:
            text = clean(backend.console_log(name))
            sys.stdout.buffer.write(last_lines(text, tail) if tail else text)
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
            out.print(json.dumps(output.with_iso_times(event)), markup=False, highlight=False, soft_wrap=True)


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
explain_command.register(app, out, _fail)
change_commands.register(app, _backend, out, err)
snapshot_commands.register(app, _backend, out)
image_commands.register(app, _backend, out)
migration_commands.register(app, _backend, out, err)
fleet_commands.register(app, _agent, out)
_add_plugin_commands()


GLOBAL_OPTIONS = frozenset({"--agent", "--token", "--config", "-c"})
"""Options of `vmhost` itself, which virsh and incus users also put after the command."""


def hoist_global_options(args: list[str]) -> list[str]:
    """`vmhost list --agent URL` means `vmhost --agent URL list`; nothing after `--` is touched."""
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if rest and arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            width = 1 if "=" in arg else 2
            hoisted += args[index : index + width]
            index += width
            continue
        rest.append(arg)
        index += 1
    return hoisted + rest


def run() -> None:
    """The `vmhost` command."""
    app(args=hoist_global_options(sys.argv[1:]), prog_name="vmhost")

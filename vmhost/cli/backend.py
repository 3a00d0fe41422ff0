"""What the CLI drives: the local engine, or a remote agent over HTTP, with the same methods and results."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from vmhost.api import peer
from vmhost.drivers.base import ConsoleStream
from vmhost.drivers.report import host_report
from vmhost.engine import Engine, images
from vmhost.engine.events import VmEvent
from vmhost.engine.peer import MigrationRequest
from vmhost.engine.views import select, summary
from vmhost.errors import VmhostError

MIGRATION_EVENTS = ("migration", "migrated")


class Backend(Protocol):
    def create(self, document: Any, start: bool) -> dict[str, Any]: ...

    def validate(self, document: Any) -> str:
        """The spec's name when create would take it (spec and host checks); SpecError with every problem."""
        ...

    def list_rows(self, filters: dict[str, str], sort: str | None, fields: list[str]) -> list[dict[str, Any]]:
        """The `list` rows that match every filter (field=value, label.KEY=value), in order, with these fields
        (every one when empty); an agent selects them itself (engine/views.py check_query says what is valid)."""
        ...

    def get(self, name: str) -> dict[str, Any]: ...

    def info(self, name: str) -> dict[str, Any]: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, force: bool, timeout: float | None) -> dict[str, Any]: ...

    def reboot(self, name: str, force: bool) -> None: ...

    def kill(self, name: str) -> None: ...

    def attach_disk(self, name: str, disk: dict[str, Any]) -> str:
        """The new disk's target; hot-plugged when the VM runs."""
        ...

    def detach_disk(self, name: str, target: str) -> None: ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def update(self, name: str, patch: dict[str, Any], live: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """The plan (engine/plan.py UpdateResult.view()): with dry_run only made, otherwise applied."""
        ...

    def console_log(self, name: str) -> bytes: ...

    def follow_console_log(self, name: str) -> Iterator[bytes]: ...

    def open_console(self, name: str) -> ConsoleStream: ...

    def host(self) -> dict[str, Any]: ...

    def shutdown_host(self, timeout: float | None) -> dict[str, Any]:
        """Every live VM stopped in reverse startup order (engine/host_shutdown.py); how each went off."""
        ...

    def restore_progress(self) -> dict[str, Any]:
        """How far the agent's restore at its start got (GET /v1/host/restore)."""
        ...

    def create_snapshot(self, name: str, snapshot: str, *, disk_only: bool, quiesce: bool) -> dict[str, Any]: ...

    def list_snapshots(self, name: str) -> list[dict[str, Any]]: ...

    def revert_snapshot(self, name: str, snapshot: str) -> dict[str, Any]: ...

    def delete_snapshot(self, name: str, snapshot: str) -> None: ...

    def import_image(self, request: dict[str, Any], progress: Callable[[int, int | None], None]) -> dict[str, Any]: ...

    def migrate(self, name: str, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        """`request`: `to` (the destination agent) and MigrationRequest's fields; `progress` gets each migration
        event's text (`phase memory 42% remaining 12 MiB downtime 30 ms`). The result: name and to."""
        ...

    def evacuate(self, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        """`request`: `to` (a list), `concurrency` and MigrationRequest's fields; api/peer.py evacuation_view."""
        ...

    def list_images(self) -> list[dict[str, Any]]: ...

    def get_image(self, name: str) -> dict[str, Any]: ...

    def delete_image(self, name: str) -> None: ...

    def pull_image(self, reference: str, name: str | None, progress: Callable[[str], None]) -> dict[str, Any]: ...


class LocalBackend:
    """The engine in this process; the results are shaped like the agent's JSON."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, document: Any, start: bool) -> dict[str, Any]:
        return self.engine.get(self.engine.create(document, start=start).name)

    def validate(self, document: Any) -> str:
        return self.engine.validate(document).name

    def list_rows(self, filters: dict[str, str], sort: str | None, fields: list[str]) -> list[dict[str, Any]]:
        rows = [summary(record, state, self.engine.config.accel) for record, state in self.engine.list_vms()]
        chosen = select(rows, filters, sort)
        return [{field: row[field] for field in fields} for row in chosen] if fields else chosen

    def get(self, name: str) -> dict[str, Any]:
        return self.engine.get(name)

    def info(self, name: str) -> dict[str, Any]:
        return self.engine.info(name)

    def start(self, name: str) -> None:
        self.engine.start(name)

    def stop(self, name: str, force: bool, timeout: float | None) -> dict[str, Any]:
        return vars(self.engine.stop(name, force=force, timeout=timeout))

    def reboot(self, name: str, force: bool) -> None:
        self.engine.reboot(name, force=force)

    def kill(self, name: str) -> None:
        self.engine.kill(name)

    def attach_disk(self, name: str, disk: dict[str, Any]) -> str:
        return self.engine.attach_disk(name, disk)

    def detach_disk(self, name: str, target: str) -> None:
        self.engine.detach_disk(name, target)

    def pause(self, name: str) -> None:
        self.engine.pause(name)

    def resume(self, name: str) -> None:
        self.engine.resume(name)

    def delete(self, name: str) -> None:
        self.engine.delete(name)

    def update(self, name: str, patch: dict[str, Any], live: bool = False, dry_run: bool = False) -> dict[str, Any]:
        return self.engine.update(name, patch, live=live, dry_run=dry_run).view()

    def console_log(self, name: str) -> bytes:
        path = self.engine.console_log_path(name)
        return path.read_bytes() if path.exists() else b""

    def follow_console_log(self, name: str) -> Iterator[bytes]:
        return self.engine.follow_console_log(name)

    def open_console(self, name: str) -> ConsoleStream:
        return self.engine.open_console(name)

    def create_snapshot(self, name: str, snapshot: str, *, disk_only: bool, quiesce: bool) -> dict[str, Any]:
        return self.engine.create_snapshot(name, snapshot, disk_only=disk_only, quiesce=quiesce)

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        return self.engine.list_snapshots(name)

    def revert_snapshot(self, name: str, snapshot: str) -> dict[str, Any]:
        return self.engine.revert_snapshot(name, snapshot)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self.engine.delete_snapshot(name, snapshot)

    def host(self) -> dict[str, Any]:
        return host_report(self.engine.driver, len(self.engine.list_vms_cached()))

    def shutdown_host(self, timeout: float | None) -> dict[str, Any]:
        return self.engine.shutdown_host(timeout)

    def restore_progress(self) -> dict[str, Any]:
        raise VmhostError("only an agent restores VMs (at its start): ask it with --agent URL")

    def migrate(self, name: str, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        record = self.engine.record(name)
        (to,) = peer.reachable(self.engine.config, [request["to"]])
        options = MigrationRequest.model_validate({k: v for k, v in request.items() if k != "to"})
        with _migration_events(self.engine, progress, record.name):
            self.engine.migrate(record.name, to, options)
        return {"name": record.name, "to": to}

    def evacuate(self, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        to = peer.reachable(self.engine.config, request["to"])
        options = MigrationRequest.model_validate({k: v for k, v in request.items() if k not in ("to", "concurrency")})
        with _migration_events(self.engine, progress, None):
            return peer.evacuation_view(self.engine.evacuate(to, options, request.get("concurrency")))

    def import_image(self, request: dict[str, Any], progress: Callable[[int, int | None], None]) -> dict[str, Any]:
        """`request` as /v1/images takes it: source, name, sha256, format, uuid."""
        source, name = request["source"], request["name"]
        options = {"sha256": request.get("sha256"), "fmt": request.get("format", "auto"), "uuid": request.get("uuid")}
        return images.view(self.engine.import_image(source, name, progress=progress, **options))

    def list_images(self) -> list[dict[str, Any]]:
        return [images.view(record) for record in self.engine.list_images()]

    def get_image(self, name: str) -> dict[str, Any]:
        return images.view(self.engine.get_image(name))

    def delete_image(self, name: str) -> None:
        self.engine.delete_image(name)

    def pull_image(self, reference: str, name: str | None, progress: Callable[[str], None]) -> dict[str, Any]:
        return images.view(self.engine.pull_image(reference, name, progress=progress))


@contextmanager
def _migration_events(engine: Engine, progress: Callable[[str], None], vm: str | None) -> Iterator[None]:
    """The engine's migration events (of `vm`, or of every VM prefixed with its name) as progress lines."""

    def listen(event: VmEvent) -> None:
        if event.type in MIGRATION_EVENTS and vm in (None, event.vm):
            progress(event.reason if vm else f"{event.vm}: {event.reason}")

    unsubscribe = engine.events.subscribe(listen)
    try:
        yield
    finally:
        unsubscribe()

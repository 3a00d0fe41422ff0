"""What the CLI drives: the local engine, or a remote agent over HTTP, with the same methods and results."""

from collections.abc import Iterator
from typing import Any, Protocol

from vmhost.drivers.base import ConsoleStream
from vmhost.drivers.report import host_report
from vmhost.engine import Engine
from vmhost.engine.views import summary


class Backend(Protocol):
    def create(self, document: Any, start: bool) -> dict[str, Any]: ...

    def list_rows(self) -> list[dict[str, Any]]: ...

    def get(self, name: str) -> dict[str, Any]: ...

    def info(self, name: str) -> dict[str, Any]: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, force: bool, timeout: float | None) -> dict[str, Any]: ...

    def reboot(self, name: str, force: bool) -> None: ...

    def kill(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def update(self, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...

    def console_log(self, name: str) -> bytes: ...

    def follow_console_log(self, name: str) -> Iterator[bytes]: ...

    def open_console(self, name: str) -> ConsoleStream: ...

    def host(self) -> dict[str, Any]: ...


class LocalBackend:
    """The engine in this process; the results are shaped like the agent's JSON."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, document: Any, start: bool) -> dict[str, Any]:
        return self.engine.get(self.engine.create(document, start=start).name)

    def list_rows(self) -> list[dict[str, Any]]:
        return [summary(record, state) for record, state in self.engine.list_vms()]

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

    def delete(self, name: str) -> None:
        self.engine.delete(name)

    def update(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.engine.get(self.engine.update(name, patch).name)

    def console_log(self, name: str) -> bytes:
        path = self.engine.console_log_path(name)
        return path.read_bytes() if path.exists() else b""

    def follow_console_log(self, name: str) -> Iterator[bytes]:
        return self.engine.follow_console_log(name)

    def open_console(self, name: str) -> ConsoleStream:
        return self.engine.open_console(name)

    def host(self) -> dict[str, Any]:
        return host_report(self.engine.driver, len(self.engine.list_vms_cached()))

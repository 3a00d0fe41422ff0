"""Undo what a failed operation already did, newest first."""

from collections.abc import Callable
from types import TracebackType

from vmhost.errors import VmhostError


class Rollback:
    """Collect undo steps; on an exception run them in reverse and note any that failed too."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, description: str, undo: Callable[[], None]) -> None:
        self._steps.append((description, undo))

    def __enter__(self) -> "Rollback":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            return
        failures = []
        for description, undo in reversed(self._steps):
            try:
                undo()
            except Exception as undo_error:
                failures.append(f"could not {description}: {undo_error}")
        if failures and isinstance(exc, VmhostError):
            exc.detail = "; ".join(filter(None, [exc.detail, *failures]))

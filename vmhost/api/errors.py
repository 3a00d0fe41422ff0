"""One error shape for every route: {code, message, details}, with an HTTP status that fits."""

from typing import Any

from vmhost.engine.hooks import HookFailed, PostHookFailed
from vmhost.errors import (
    Conflict,
    HostResourceError,
    HypervisorError,
    NotFound,
    RenderHookError,
    Unavailable,
    Unsupported,
    VmhostError,
)
from vmhost.spec import SpecError

STATUS: list[tuple[type[Exception], int]] = [
    (SpecError, 422),
    (HookFailed, 409),
    (PostHookFailed, 500),
    (RenderHookError, 500),
    (NotFound, 404),
    (Conflict, 409),
    (HostResourceError, 409),
    (HypervisorError, 502),
    (Unavailable, 503),
    (Unsupported, 501),
    (VmhostError, 400),
]


def status_of(exc: Exception) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 500)


def error_body(exc: Exception) -> dict[str, Any]:
    """Operator-readable; an unexpected exception shows its type only, never a traceback."""
    if isinstance(exc, SpecError):
        count = len(exc.problems)
        return {
            "code": "invalid_spec",
            "message": f"invalid spec ({count} problem{'s' if count != 1 else ''})",
            "details": [{"path": p.path, "message": p.message} for p in exc.problems],
        }
    if isinstance(exc, Unsupported):
        details = {"driver": exc.driver, "capability": exc.capability, "hint": exc.detail}
        return {"code": exc.code, "message": exc.message, "details": details}
    if isinstance(exc, VmhostError):
        return {"code": exc.code, "message": exc.message, "details": exc.detail}
    return {"code": "internal", "message": f"internal error ({type(exc).__name__}); see the agent log", "details": None}

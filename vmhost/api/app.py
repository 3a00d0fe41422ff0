"""The FastAPI application: routes, error shapes, request logs, background freshness of the store."""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmhost import __version__
from vmhost.api import metrics, v1
from vmhost.api.agent import Agent
from vmhost.api.errors import error_body, status_of
from vmhost.api.models import Health
from vmhost.errors import VmhostError
from vmhost.spec import SpecError, VMSpec

log = logging.getLogger("vmhost.http")
RECONCILE_INTERVAL = 30.0
"""Events keep the store true; this bulk reconcile is only the safety net."""
Router = Callable[[Agent], Any]


def create_app(agent: Agent, extra_routers: tuple[Router, ...] = ()) -> FastAPI:
    app = FastAPI(
        title="vmhost",
        version=__version__,
        lifespan=_lifespan(agent),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        description="Host agent for virtual machines. Every route but /healthz needs `Authorization: Bearer <token>`.",
    )
    app.include_router(v1.router(agent))
    for make_router in extra_routers:
        app.include_router(make_router(agent))
    registry = metrics.registry_for(agent.engine)

    @app.get("/healthz", response_model=Health, tags=["host"], openapi_extra={"security": []})
    def healthz() -> dict[str, str]:
        """Liveness; needs no token."""
        return {"status": "ok"}

    @app.get(
        "/metrics",
        dependencies=[Depends(agent.auth)],
        tags=["host"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry), media_type="text/plain; version=0.0.4")

    _install_error_handlers(app)
    _install_request_log(app)

    @app.get("/openapi.json", dependencies=[Depends(agent.auth)], include_in_schema=False)
    def openapi_document() -> dict[str, Any]:
        """Behind the token like everything but /healthz (so no browsable docs UI: it could not send one)."""
        return _openapi(app)

    return app


def _lifespan(agent: Agent) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        agent.monitor.start(
            sink=agent.engine.on_domain_event,
            on_connected=lambda: _resync(agent),
            on_lost=lambda why: log.warning("hypervisor connection lost", extra={"reason": why}),
        )
        await asyncio.to_thread(_recover, agent)
        stop = threading.Event()
        thread = threading.Thread(target=_keep_store_fresh, args=(agent, stop), name="reconcile", daemon=True)
        thread.start()
        yield
        stop.set()
        agent.monitor.stop()
        await asyncio.to_thread(thread.join, 5)
        agent.operations.shutdown()

    return lifespan


def _recover(agent: Agent) -> None:
    """Start-up recovery must never keep the agent from serving: the API is how an operator fixes things."""
    try:
        agent.engine.recover()
    except Exception:
        log.exception("recovery at start-up failed")


def _resync(agent: Agent) -> None:
    """After (re)connecting to the hypervisor: catch up with whatever happened while events were not flowing."""
    try:
        agent.engine.list_vms()
    except Exception:
        log.exception("resync failed")
    log.info("hypervisor events connected")


def _keep_store_fresh(agent: Agent, stop: threading.Event) -> None:
    while not stop.wait(RECONCILE_INTERVAL):
        try:
            agent.engine.list_vms()
        except Exception:
            log.exception("reconcile failed")


def _install_error_handlers(app: FastAPI) -> None:
    async def vmhost_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_of(exc))

    async def request_invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse(
            {"code": "invalid_request", "message": "invalid request", "details": details}, status_code=422
        )

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail), "details": None},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request crashed", exc_info=exc)
        return JSONResponse(error_body(exc), status_code=500)

    app.add_exception_handler(SpecError, vmhost_error)
    app.add_exception_handler(VmhostError, vmhost_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _install_request_log(app: FastAPI) -> None:
    @app.middleware("http")
    async def log_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - began) * 1000, 2),
                "client": request.client.host if request.client else None,
            },
        )
        return response


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the VMSpec schema the create route takes as a raw body."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    spec_schema = VMSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(spec_schema.pop("$defs", {}))
    components["VMSpec"] = spec_schema
    document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document

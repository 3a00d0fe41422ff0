"""The FastAPI application: routes, error shapes, request logs, background freshness of the store."""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from vmhost import __version__
from vmhost.api import dashboard, fleet, host, image_pull, images, metrics, migration, snapshots, v1
from vmhost.api.agent import Agent
from vmhost.api.auth import CODES, AuthMiddleware
from vmhost.api.errors import error_body, status_of
from vmhost.api.models import Health
from vmhost.api.principal import Principal
from vmhost.errors import VmhostError
from vmhost.plugins import Plugins
from vmhost.spec import SpecError
from vmhost.spec.schema import spec_json_schema

log = logging.getLogger("vmhost.http")
RECONCILE_INTERVAL = 30.0
"""Events keep the store true; this bulk reconcile is only the safety net."""


def create_app(agent: Agent, plugins: Plugins | None = None) -> FastAPI:
    """The agent's API; enabled plugins add /ext/<name> routes and dialect routes (e.g. ZStack's paths)."""
    app = FastAPI(
        title="vmhost",
        version=__version__,
        lifespan=_lifespan(agent),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        description="Host agent for virtual machines. Every route but /healthz needs `Authorization: Bearer <token>`.",
    )
    app.state.stopping = asyncio.Event()
    """Set once the server begins to stop (server.AgentServer): open event streams end then."""

    @app.get("/healthz", response_model=Health, tags=["host"], openapi_extra={"security": []})
    def healthz() -> dict[str, str]:
        """Liveness; needs no token. The first route: FastAPI prepares each route at the first request that
        tries it, so a liveness probe right after start would otherwise wait for all of them (~0.15 s CPU)."""
        return {"status": "ok"}

    app.include_router(v1.router(agent))
    app.include_router(image_pull.router(agent))
    app.include_router(images.router(agent))
    app.include_router(snapshots.router(agent))
    app.include_router(host.router(agent))
    app.include_router(migration.router(agent))
    app.include_router(fleet.router(agent))
    app.include_router(dashboard.router(agent))
    registry = metrics.registry_for(agent.engine)

    @app.get(
        "/metrics",
        dependencies=[Depends(agent.auth)],
        tags=["host"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry), media_type="text/plain; version=0.0.4")

    trusted = _mount_plugins(app, agent, plugins) if plugins is not None else []
    _install_auth(app, agent, _matches_any(trusted), streamed=migration.streams_body)
    _install_error_handlers(app)
    _install_request_log(app)

    @app.get("/openapi.json", dependencies=[Depends(agent.auth)], include_in_schema=False)
    def openapi_document() -> dict[str, Any]:
        """Behind the token like everything but /healthz (so no browsable docs UI: it could not send one)."""
        return _openapi(app)

    return app


def _mount_plugins(app: FastAPI, agent: Agent, plugins: Plugins) -> list[BaseRoute]:
    """Plugin routes are behind the agent's auth whatever the plugin declares: /ext/* needs the token; dialect
    routes (returned: the trusted paths) accept the token or a trusted source (planes that cannot send one)."""
    reserved = [str(getattr(route, "path", "")) for route in app.routes] + ["/openapi.json"]
    trusted: list[BaseRoute] = []
    for prefix, router in plugins.routers(agent, reserved):
        auth = agent.auth if prefix else agent.auth.trusted_or_token
        app.include_router(router, prefix=prefix, dependencies=[Depends(auth)])
        if not prefix:
            trusted += router.routes
    return trusted


def create_listener_app(agent: Agent, plugin: str, router: APIRouter) -> FastAPI:
    """A plugin's own listener: its routes only, with the agent's auth (each route a trusted path, as dialect
    routes are), body limit, error shapes and request log."""
    app = FastAPI(title=f"vmhost plugin {plugin}", version=__version__, openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router, dependencies=[Depends(agent.auth.trusted_or_token)])
    _install_auth(app, agent, lambda _scope: True)
    _install_error_handlers(app)
    _install_request_log(app)
    return app


def _install_auth(
    app: FastAPI,
    agent: Agent,
    trusted_path: Callable[[Scope], bool],
    streamed: Callable[[Scope], bool] = lambda _scope: False,
) -> None:
    """Before the request log is installed, so that the log (outside it) records refusals too."""
    app.add_middleware(
        AuthMiddleware,
        auth=agent.auth,
        trusted_path=trusted_path,
        max_body_bytes=agent.config.max_body_bytes,
        streamed=streamed,
    )


def _matches_any(routes: list[BaseRoute]) -> Callable[[Scope], bool]:
    return lambda scope: scope["type"] == "http" and any(route.matches(scope)[0] != Match.NONE for route in routes)


def _lifespan(agent: Agent) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        agent.monitor.start(
            sink=agent.engine.on_domain_event,
            on_connected=lambda: _resync(agent),
            on_lost=lambda why: log.warning("hypervisor connection lost", extra={"reason": why}),
        )
        await asyncio.to_thread(_recover, agent)
        if agent.reconciler is not None:
            agent.reconciler.start()
        stop = threading.Event()
        thread = threading.Thread(target=_keep_store_fresh, args=(agent, stop), name="reconcile", daemon=True)
        thread.start()
        sampler = threading.Thread(target=agent.stats.run, args=(stop,), name="stats", daemon=True)
        sampler.start()
        yield
        if agent.reconciler is not None:
            await asyncio.to_thread(agent.reconciler.close)
        await asyncio.to_thread(host.on_exit, agent)
        stop.set()
        agent.monitor.stop()
        await asyncio.to_thread(thread.join, 5)
        await asyncio.to_thread(sampler.join, 5)
        agent.operations.shutdown()

    return lifespan


def _recover(agent: Agent) -> None:
    """Start-up recovery must never keep the agent from serving: the API is how an operator fixes things. The
    restore of the VMs that should run goes on in the background (GET /v1/host/restore)."""
    try:
        agent.engine.recover(background=True)
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
        codes = {**CODES, 404: "not_found", 405: "method_not_allowed"}
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
        try:
            response = await call_next(request)
        except Exception as exc:  # answered here, so the connection stays usable (Starlette's last-resort
            log.exception("request crashed", exc_info=exc)  # handler answers, then closes it)
            response = JSONResponse(error_body(exc), status_code=500)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - began) * 1000, 2),
                "client": request.client.host if request.client else None,
                "principal": getattr(request.state, "principal", Principal("")).name or None,
            },
        )
        return response


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the VMSpec schema the create route takes as a raw body."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    spec_schema = spec_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(spec_schema.pop("$defs", {}))
    components["VMSpec"] = spec_schema
    document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document

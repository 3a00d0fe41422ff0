"""`vmhost serve`: build the agent and run it under uvicorn."""

import asyncio
import gc
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from vmhost.api import logs, peer
from vmhost.api.agent import Agent
from vmhost.api.app import create_app, create_listener_app
from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operations, report_progress
from vmhost.config import HostConfig
from vmhost.drivers.select import build_event_source
from vmhost.errors import VmhostError
from vmhost.fleet.control import Fleet
from vmhost.fleet.reconciler import Reconciler
from vmhost.host.tokens import ensure_token, token_path
from vmhost.plugins import Plugins
from vmhost.plugins.host import build_engine

log = logging.getLogger("vmhost.http")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False


def check_listen(listen: Listen) -> None:
    """Plain HTTP only on loopback, unless the operator says --insecure; TLS needs both files."""
    if (listen.tls_cert is None) != (listen.tls_key is None):
        raise VmhostError("TLS needs both --tls-cert and --tls-key")
    for path in (listen.tls_cert, listen.tls_key):
        if path is not None and not path.is_file():
            raise VmhostError(f"TLS file {path} does not exist")
    if listen.tls_cert is None and not listen.insecure and not peer.is_loopback(listen.host):
        raise VmhostError(
            f"refusing to serve plain HTTP on {listen.host}: give --tls-cert/--tls-key, or --insecure to accept that"
        )


def build_agent(config: HostConfig, plugins: Plugins) -> Agent:
    engine = build_engine(config, plugins, progress=report_progress, peers=peer.peers(config))
    ensure_token(config.data_dir)
    auth = TokenAuth(config.data_dir, tuple(config.zstack_trusted_sources))
    monitor = build_event_source(config, engine.driver.drivers)
    operations = Operations(workers=config.operation_workers, journal=engine)
    agent = Agent(config=config, engine=engine, operations=operations, auth=auth, monitor=monitor)
    if config.fleet is not None:
        reconciler = Reconciler(engine, config, config.fleet)
        agent.reconciler, agent.fleet = reconciler, Fleet(reconciler.etcd, reconciler.keys)
    return agent


def serve(config: HostConfig, listen: Listen) -> None:
    check_listen(listen)
    logs.configure()
    plugins = Plugins.discover(config)
    agent = build_agent(config, plugins)
    app = create_app(agent, plugins)
    gc.collect()
    gc.freeze()  # start-up objects live forever: keep them out of every later full collection
    with plugin_listeners(agent, plugins, listen) as listeners:
        log.info("agent listening", extra=listening_facts(config, listen, [s.config.port for s in listeners]))
        AgentServer(uvicorn_config(app, listen, listen.port, config), app.state.stopping).run()


def listening_facts(config: HostConfig, listen: Listen, plugin_ports: list[int]) -> dict[str, object]:
    """Where the agent answers and where its admin token is (never the token itself)."""
    scheme = "https" if listen.tls_cert else "http"
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return {
        "url": f"{scheme}://{host}:{listen.port}",
        "tls": bool(listen.tls_cert),
        "token_file": str(token_path(config.data_dir)),
        "plugin_ports": plugin_ports,
    }


SHUTDOWN_GRACE = 5
"""Seconds a stopping agent waits for open requests; then it cancels them. Event streams, consoles and a
dashboard left open never end by themselves, and must not keep the agent from stopping."""


class AgentServer(uvicorn.Server):
    """Tells the app's open event streams to end the moment the agent begins to stop: they never end by
    themselves, and uvicorn would wait SHUTDOWN_GRACE for them, then cancel them with an error in the log."""

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event):
        super().__init__(config)
        self.stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()
        await super().shutdown(sockets)


def uvicorn_config(app: FastAPI, listen: Listen, port: int, config: HostConfig) -> uvicorn.Config:
    """Proxy headers only from the operator's `trusted_proxies`: uvicorn's default (believe X-Forwarded-For
    from 127.0.0.1) would let any local process pose as a trusted source."""
    return uvicorn.Config(
        app,
        host=listen.host,
        port=port,
        ssl_certfile=str(listen.tls_cert) if listen.tls_cert else None,
        ssl_keyfile=str(listen.tls_key) if listen.tls_key else None,
        log_config=None,
        access_log=False,
        ws_max_size=1 << 20,
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=list(config.trusted_proxies) or None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )


@contextmanager
def plugin_listeners(agent: Agent, plugins: Plugins, listen: Listen) -> Iterator[list[uvicorn.Server]]:
    """Plugins' own listeners, each in a thread of its own, on the agent's address with its TLS.

    Threads, not tasks on the main loop: uvicorn lets only the main thread's server own the signals, so
    SIGTERM stops the main server, and leaving this block stops the others.
    """
    apps = [
        (create_listener_app(agent, name, listener.router), listener.port)
        for name, listener in plugins.listeners(agent)
    ]
    servers = [uvicorn.Server(uvicorn_config(app, listen, port, agent.config)) for app, port in apps]
    threads = [threading.Thread(target=server.run, name="plugin-listener", daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.should_exit = True
        for thread in threads:
            thread.join(10)

"""`vmhost serve`: build the agent and run it under uvicorn."""

import gc
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from vmhost.api import logs, zstack
from vmhost.api.agent import Agent
from vmhost.api.app import create_app
from vmhost.api.auth import TokenAuth, ensure_token
from vmhost.api.operations import Operations, report_progress
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers, build_event_source
from vmhost.engine import Engine
from vmhost.errors import VmhostError

ROUTERS = (zstack.router,)
"""Routers served beside the native API."""


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
    if listen.tls_cert is None and not listen.insecure and not _is_loopback(listen.host):
        raise VmhostError(
            f"refusing to serve plain HTTP on {listen.host}: give --tls-cert/--tls-key, or --insecure to accept that"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_agent(config: HostConfig) -> Agent:
    drivers = build_drivers(config)
    engine = Engine(config, drivers, progress=report_progress)
    auth = TokenAuth(ensure_token(config.data_dir), tuple(config.zstack_trusted_sources))
    monitor = build_event_source(config, drivers)
    return Agent(config=config, engine=engine, operations=Operations(), auth=auth, monitor=monitor)


def serve(config: HostConfig, listen: Listen) -> None:
    check_listen(listen)
    logs.configure()
    app = create_app(build_agent(config), extra_routers=ROUTERS)
    gc.collect()
    gc.freeze()  # start-up objects live forever: keep them out of every later full collection
    uvicorn.run(
        app,
        host=listen.host,
        port=listen.port,
        ssl_certfile=str(listen.tls_cert) if listen.tls_cert else None,
        ssl_keyfile=str(listen.tls_key) if listen.tls_key else None,
        log_config=None,
        access_log=False,
        ws_max_size=1 << 20,
    )

"""The extended start on the plugin's own listener: ZStack's async protocol, the core's start handler."""

from typing import Any

from fastapi import APIRouter

from vmhost.api.agent import Agent
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.api.zstack.routes import command_router
from vmhost.api.zstack.tasks import Job
from vmhost_ex_start.command import extended_start_spec

START_PATH = "/ex/vm/start"


def start(host: ZStackHost, cmd: dict[str, Any]) -> Job:
    """Like /vm/start (create or redefine, then start), with the extension's fields in the spec."""
    return host.start_document(extended_start_spec(cmd, host.console_listen))


def start_router(agent: Agent) -> APIRouter:
    host = ZStackHost(agent.engine, agent.config.zstack_console_listen)
    return command_router(agent, host, {START_PATH: start}, tag="ex-start")

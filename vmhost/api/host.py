"""/v1/host/restore and /v1/host/shutdown: how far the restore at agent start got, and stopping the host's VMs
(in reverse startup order) before the host goes down; plus what the agent does at its own exit."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from vmhost.api.agent import Agent
from vmhost.api.models import OperationView
from vmhost.api.operations import CallbackTargets
from vmhost.api.v1 import ERRORS, Callback, Wait, _refuse_long_timeout

log = logging.getLogger("vmhost.http")


class ShutdownOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: float | None = Field(
        None, ge=0, le=3600, description="Seconds each VM's graceful stop waits before it is forced (stop_timeout)."
    )


class RestoreGroup(BaseModel):
    order: int | None = Field(description="The group's startup.order; null: the VMs without one (last).")
    vms: dict[str, str] = Field(
        description="VM name -> pending, starting, running, ready, failed, skipped or wait-timed-out."
    )
    started_at: float | None
    first_running_at: float | None = Field(description="When the group's first VM was running (Unix seconds).")
    finished_at: float | None


class RestoreView(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    state: str = Field(description="idle, running, done, or cancelled (the agent stopped first).")
    total: int
    pending: int
    starting: int
    running: int
    ready: int
    failed: int
    skipped: int
    wait_timed_out: int = Field(alias="wait-timed-out")
    began_at: float | None
    finished_at: float | None
    groups: list[RestoreGroup]
    errors: dict[str, str] = Field(description="VM name -> why it failed, was skipped or its wait timed out.")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/v1/host", dependencies=[Depends(agent.auth)], tags=["host"], responses=ERRORS)
    engine, operations = agent.engine, agent.operations
    targets = CallbackTargets.of(agent.config)

    @api.get("/restore", response_model=RestoreView, response_model_by_alias=True)
    def restore_progress() -> dict[str, Any]:
        """The restore of the VMs that should run, started at agent start: state (idle, running, done,
        cancelled), counts by VM status, and per `startup.order` group its VMs, start, first VM running, end."""
        return engine.restore.view()

    @api.post(
        "/shutdown",
        status_code=202,
        response_model=OperationView,
        responses={200: {"model": OperationView, "description": "with wait=true: the finished operation"}},
    )
    async def shutdown_host(
        options: Annotated[ShutdownOptions | None, Body()] = None, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """Stop every live VM in reverse startup order, a group at once, each with the graceful deadline; they are
        remembered, so the next agent start restores them. The result says how each one went off."""
        timeout = (options or ShutdownOptions()).timeout
        _refuse_long_timeout(timeout, agent.config.max_stop_timeout)
        if callback_url is not None:
            targets.check(callback_url, "callback_url")
        operation = operations.submit(
            "host-shutdown", None, lambda: engine.shutdown_host(timeout), callback_url=callback_url
        )
        return await agent.respond(operation, wait)

    return api


def on_exit(agent: Agent) -> None:
    """At the agent's exit (SIGTERM): the restore stops starting VMs; with shutdown_on_sigterm the VMs stop too."""
    agent.engine.restore.cancel()
    if agent.config.shutdown_on_sigterm:
        log.info("stopping the VMs before the agent exits (shutdown_on_sigterm)")
        try:
            agent.engine.shutdown_host()
        except Exception:
            log.exception("host shutdown at exit failed")

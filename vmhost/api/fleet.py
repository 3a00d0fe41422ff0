"""`/v1/fleet/...`: the fleet's desired state, read and written through any agent of the fleet, and the guard
that keeps local changes off the VMs the fleet manages (local and fleet changes must never fight)."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from vmhost.api.agent import Agent
from vmhost.api.models import ErrorBody
from vmhost.errors import Conflict
from vmhost.fleet.control import Fleet
from vmhost.fleet.model import Placement

DRAIN_WAIT = 900.0
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": meaning}
    for status, meaning in (
        (401, "no or wrong token"),
        (404, "no such fleet VM or host"),
        (409, "not a fleet agent, no host can take the VM, or the fleet changed under every attempt"),
        (422, "invalid spec (every problem at its path)"),
        (503, "etcd is unreachable"),
    )
}


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any]
    host: str | None = Field(default=None, description="Place it on this host; unset: the scheduler picks.")
    state: Literal["running", "stopped"] = "running"
    placement: Placement | None = None


def not_in_fleet() -> Conflict:
    return Conflict("this agent is not part of a fleet (no [fleet] in its config)")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/v1/fleet", dependencies=[Depends(agent.auth)], tags=["fleet"], responses=ERRORS)

    def fleet() -> Fleet:
        if agent.fleet is None:
            raise not_in_fleet()
        return agent.fleet

    Control = Annotated[Fleet, Depends(fleet)]

    @api.post("/vms", status_code=201)
    async def apply(request: ApplyRequest, control: Control) -> JSONResponse:
        """Desired state for one VM: a new one is placed, a known one changed where it is; the same spec again
        answers 200 "nothing to change"."""
        applied = await asyncio.to_thread(control.apply, request.spec, request.host, request.state, request.placement)
        return JSONResponse(applied.view(), status_code=201 if applied.changed else 200)

    @api.get("/vms")
    async def vms(control: Control) -> list[dict[str, Any]]:
        return await asyncio.to_thread(control.vms)

    @api.get("/vms/{vm}")
    async def vm(vm: str, control: Control) -> dict[str, Any]:
        return await asyncio.to_thread(control.vm, vm)

    @api.delete("/vms/{vm}")
    async def delete(vm: str, control: Control) -> dict[str, Any]:
        return await asyncio.to_thread(control.delete, vm)

    @api.get("/hosts")
    async def hosts(control: Control) -> list[dict[str, Any]]:
        return await asyncio.to_thread(control.hosts)

    @api.post("/hosts/{host}/drain")
    async def drain(
        host: str,
        control: Control,
        wait: Annotated[bool, Query(description="Return once no VM is left moving off the host.")] = False,
    ) -> dict[str, Any]:
        """Cordon the host and move each of its VMs to another host (live when running)."""
        return await asyncio.to_thread(control.drain, host, DRAIN_WAIT if wait else None)

    @api.post("/hosts/{host}/uncordon")
    async def uncordon(host: str, control: Control) -> dict[str, Any]:
        return await asyncio.to_thread(control.uncordon, host)

    return api


def local_changes_guard(agent: Agent) -> Any:
    """A dependency for the routes that change one VM: refused for a VM the fleet manages on this host."""

    async def refuse_fleet_vm(connection: HTTPConnection) -> None:
        """Reads and console sessions (websockets carry no method) change nothing, so they pass."""
        vm = connection.path_params.get("vm")
        reconciler = agent.reconciler
        if connection.scope["type"] != "http" or connection.scope["method"] in ("GET", "HEAD"):
            return
        if vm is None or reconciler is None:
            return
        if reconciler.manages(str(vm)):
            raise Conflict(f"{vm} is managed by the fleet: change it with vmhost fleet apply")

    return Depends(refuse_fleet_vm)

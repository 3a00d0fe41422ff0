"""Plan and apply over HTTP: `PATCH /v1/vms/{vm}` (with ?live and ?dry_run) and the convenience routes for live
changes, each a merge patch built from the VM's spec and sent through the same plan and apply.

The plan is made synchronously: a dry run answers 200 with it, a plan with a refused change 422 with every reason
at its path, a plan without changes 200 "nothing to change"; only real work becomes a 202 operation."""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vmhost.api.agent import Agent
from vmhost.api.operations import CallbackTargets
from vmhost.engine.operations import live_patches
from vmhost.errors import VmhostError
from vmhost.spec import Problem, SpecError
from vmhost.spec.units import ByteSize

Live = Annotated[bool, Query(description="Apply what the driver can to the running VM now (hot-plug).")]
DryRun = Annotated[bool, Query(description="Only plan: answer the plan (200), change nothing.")]
Wait = Annotated[bool, Query(description="Block until the operation finishes.")]
Callback = Annotated[
    str | None, Query(description="URL that receives the finished operation (POST).", pattern=r"^https?://")
]
PLANNED: dict[int | str, dict[str, Any]] = {200: {"description": "the plan of a dry run, or nothing to change"}}
NIC_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Nic"}}},
    }
}


class VcpuCount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=1024, description="vCPUs online (up to cpu.max_vcpus while running).")


class MemorySize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: ByteSize = Field(description="Memory, e.g. '512MiB' (balloon below the boot size, DIMMs above).")


class DiskSize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: ByteSize = Field(description="New size of a disk vmhost created; it only grows.")


class Media(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iso: str = Field(description="Absolute path of the ISO image to insert.")


async def planned_update(
    agent: Agent,
    vm: str,
    patch: Any,
    *,
    live: bool,
    dry_run: bool,
    wait: bool,
    callback_url: str | None,
    kind: str = "update",
) -> Response:
    """Plan now; answer the plan, the refusal or "nothing to change" at once; submit only real work."""
    engine = agent.engine
    if callback_url is not None:  # 400 before anything runs, as for every action
        CallbackTargets.of(agent.config).check(callback_url, "callback_url")
    plan = await asyncio.to_thread(lambda: engine.update(vm, patch, live=live, dry_run=True))
    if plan.refused and not dry_run:
        raise SpecError([Problem(change.path, change.reason) for change in plan.refused])
    if dry_run or not plan.changes:
        return JSONResponse(plan.view(), status_code=200)
    record = engine.record(vm)

    def work() -> dict[str, Any]:
        result = engine.update(record.name, patch, live=live)
        return {**engine.get(record.name), "plan": result.view()}

    operation = agent.operations.submit(kind, record.name, work, vm_uuid=record.uuid, callback_url=callback_url)
    return await agent.respond(operation, wait)


def router(agent: Agent) -> APIRouter:
    """Included by v1's router: its prefix, token check and error responses apply."""
    api = APIRouter(tags=["changes"])
    engine = agent.engine

    async def verb(
        vm: str, kind: str, build: Callable[[dict[str, Any]], dict[str, Any]], options: tuple[bool, bool, str | None]
    ) -> Response:
        """Build the patch from the VM's stored spec, then plan and apply it live like any update."""
        record = await asyncio.to_thread(engine.record, vm)
        dry_run, wait, callback_url = options
        patch = build(record.spec)
        return await planned_update(
            agent, vm, patch, live=True, dry_run=dry_run, wait=wait, callback_url=callback_url, kind=kind
        )

    @api.post("/vms/{vm}/nics", status_code=202, responses=PLANNED, openapi_extra=NIC_BODY)
    async def attach_nic(
        vm: str, request: Request, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """Add a NIC (validated as at create), hot-plugged when the VM runs and its driver can."""
        try:
            nic = await request.json()
        except ValueError:
            raise VmhostError("the request body is not valid JSON") from None
        options = (dry_run, wait, callback_url)
        return await verb(vm, "attach-nic", lambda spec: live_patches.attach_nic(spec, nic), options)

    @api.post("/vms/{vm}/nics/{mac}/detach", status_code=202, responses=PLANNED)
    async def detach_nic(
        vm: str, mac: str, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """Remove the NIC with this MAC; a running guest must release it first."""
        options = (dry_run, wait, callback_url)
        return await verb(vm, "detach-nic", lambda spec: live_patches.detach_nic(spec, mac), options)

    @api.post("/vms/{vm}/vcpus", status_code=202, responses=PLANNED)
    async def set_vcpus(
        vm: str, body: VcpuCount, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        options = (dry_run, wait, callback_url)
        return await verb(vm, "set-vcpus", lambda spec: live_patches.set_vcpus(spec, body.count), options)

    @api.post("/vms/{vm}/memory", status_code=202, responses=PLANNED)
    async def set_memory(
        vm: str, body: MemorySize, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        options = (dry_run, wait, callback_url)
        return await verb(vm, "set-memory", lambda spec: live_patches.set_memory(spec, body.size), options)

    @api.post("/vms/{vm}/disks/{target}/resize", status_code=202, responses=PLANNED)
    async def resize_disk(
        vm: str,
        target: str,
        body: DiskSize,
        *,
        dry_run: DryRun = False,
        wait: Wait = False,
        callback_url: Callback = None,
    ) -> Response:
        """Grow a disk vmhost created: live (block resize) while running, with qemu-img while stopped."""
        options = (dry_run, wait, callback_url)
        build = lambda spec: live_patches.resize_disk(spec, target, body.size)  # noqa: E731
        return await verb(vm, "resize-disk", build, options)

    @api.post("/vms/{vm}/cdroms/{target}/insert", status_code=202, responses=PLANNED)
    async def insert_media(
        vm: str, target: str, body: Media, *, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        options = (dry_run, wait, callback_url)
        return await verb(vm, "insert-media", lambda spec: live_patches.insert_media(spec, target, body.iso), options)

    @api.post("/vms/{vm}/cdroms/{target}/eject", status_code=202, responses=PLANNED)
    async def eject_media(
        vm: str, target: str, dry_run: DryRun = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        options = (dry_run, wait, callback_url)
        return await verb(vm, "eject-media", lambda spec: live_patches.eject_media(spec, target), options)

    return api

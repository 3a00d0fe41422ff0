"""/v1/vms/{vm}/snapshots: take, list, revert and delete snapshots. Taking, reverting and deleting are
operations (202, ?wait=true blocks); the listing answers at once from the store."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vmhost.api.agent import Agent
from vmhost.api.fleet import local_changes_guard
from vmhost.api.models import OperationView
from vmhost.api.operations import CallbackTargets, Operation
from vmhost.api.v1 import ERRORS
from vmhost.engine.snapshots import NAME

Wait = Annotated[bool, Query(description="Block until the operation finishes.")]
Callback = Annotated[
    str | None, Query(description="URL that receives the finished operation (POST).", pattern=r"^https?://")
]
SnapshotName = Annotated[str, Path(pattern=NAME.pattern, description="The snapshot's name.")]


class SnapshotCreate(BaseModel):
    """What `vmhost snapshot create` sends."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME.pattern, description="1-63 of A-Z a-z 0-9 . _ - (not first . _ -).")
    disk_only: bool = Field(False, description="External qcow2 overlays, crash-consistent (no memory state).")
    quiesce: bool = Field(False, description="Freeze the guest's filesystems through its QEMU guest agent.")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(
        prefix="/v1/vms/{vm}/snapshots",
        dependencies=[Depends(agent.auth), local_changes_guard(agent)],
        tags=["snapshots"],
        responses=ERRORS,
    )
    engine, operations = agent.engine, agent.operations
    targets = CallbackTargets.of(agent.config)

    def submit(kind: str, vm: str, work: Any, callback_url: str | None) -> Operation:
        if callback_url is not None:
            targets.check(callback_url, "callback_url")
        record = engine.record(vm)
        return operations.submit(
            kind, record.name, lambda: work(record.name), vm_uuid=record.uuid, callback_url=callback_url
        )

    @api.post("", status_code=202, response_model=OperationView)
    async def create_snapshot(
        vm: str, body: SnapshotCreate, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """Full (disks and, for a running VM, memory) unless disk_only; the result is the snapshot."""

        def work(name: str) -> dict[str, Any]:
            return engine.create_snapshot(name, body.name, disk_only=body.disk_only, quiesce=body.quiesce)

        return await agent.respond(submit("snapshot-create", vm, work, callback_url), wait)

    @api.get("")
    def list_snapshots(vm: str) -> list[dict[str, Any]]:
        """Oldest first: name, kind (full or disk-only), vm_state, created_at, layers (disk-only overlays)."""
        return engine.list_snapshots(vm)

    @api.post("/{snapshot}/revert", status_code=202, response_model=OperationView)
    async def revert_snapshot(
        vm: str, snapshot: SnapshotName, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        operation = submit("snapshot-revert", vm, lambda name: engine.revert_snapshot(name, snapshot), callback_url)
        return await agent.respond(operation, wait)

    @api.delete("/{snapshot}", status_code=202, response_model=OperationView)
    async def delete_snapshot(
        vm: str, snapshot: SnapshotName, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """A disk-only snapshot is merged back (block commit) before it goes."""
        operation = submit("snapshot-delete", vm, lambda name: engine.delete_snapshot(name, snapshot), callback_url)
        return await agent.respond(operation, wait)

    return api

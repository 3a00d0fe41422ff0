"""/v1/images: the image store. An import is an operation (it downloads); the rest answers at once."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vmhost.api.agent import Agent
from vmhost.api.models import OperationView
from vmhost.api.operations import CallbackTargets
from vmhost.api.v1 import ERRORS
from vmhost.engine.images import view

Wait = Annotated[bool, Query(description="Block until the import finishes.")]
Callback = Annotated[
    str | None, Query(description="URL that receives the finished operation (POST).", pattern=r"^https?://")
]


class ImageImport(BaseModel):
    """What `vmhost image import` sends."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="An http(s) URL, or an absolute path under allowed_paths.")
    name: str = Field(description="The image's name in the store.")
    sha256: str | None = Field(None, description="Expected sha256 (hex); a mismatch is refused and nothing kept.")
    format: Literal["auto", "qcow2", "raw"] = Field("auto", description="auto: qemu-img probes it, once.")
    uuid: str | None = Field(None, description="The image's UUID (vmadm payloads name images by UUID).")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/v1/images", dependencies=[Depends(agent.auth)], tags=["images"], responses=ERRORS)
    engine, operations = agent.engine, agent.operations
    targets = CallbackTargets.of(agent.config)

    @api.post("", status_code=202, response_model=OperationView)
    async def import_image(body: ImageImport, wait: Wait = False, callback_url: Callback = None) -> Response:
        """Copy or download an image into the store; the operation's `progress` reads
        `importing NAME: DONE/TOTAL bytes` (TOTAL `?` when the server sends no length)."""
        if callback_url is not None:
            targets.check(callback_url, "callback_url")

        def work() -> dict[str, Any]:
            record = engine.import_image(body.source, body.name, sha256=body.sha256, fmt=body.format, uuid=body.uuid)
            return view(record)

        operation = operations.submit("image-import", None, work, callback_url=callback_url)
        return await agent.respond(operation, wait)

    @api.get("")
    def list_images() -> list[dict[str, Any]]:
        return [view(record) for record in engine.list_images()]

    @api.get("/{image}")
    def get_image(image: str) -> dict[str, Any]:
        """By name or UUID."""
        return view(engine.get_image(image))

    @api.delete("/{image}", status_code=204)
    def delete_image(image: str) -> Response:
        """409 naming the VMs while any VM uses it."""
        engine.delete_image(image)
        return Response(status_code=204)

    return api

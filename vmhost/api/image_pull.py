"""POST /v1/images/pull: an OCI image from a registry into the image store, as an operation (it downloads)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vmhost.api.agent import Agent
from vmhost.api.models import OperationView
from vmhost.api.operations import CallbackTargets
from vmhost.api.v1 import ERRORS
from vmhost.engine.images import view

Wait = Annotated[bool, Query(description="Block until the pull finishes.")]
Callback = Annotated[
    str | None, Query(description="URL that receives the finished operation (POST).", pattern=r"^https?://")
]


class ImagePull(BaseModel):
    """What `vmhost image pull` sends."""

    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=512, description="registry[:port]/repository[:tag][@sha256:digest]")
    name: str | None = Field(None, description="The image's name in the store; default: the repository's last part.")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/v1/images", dependencies=[Depends(agent.auth)], tags=["images"], responses=ERRORS)
    engine, operations = agent.engine, agent.operations
    targets = CallbackTargets.of(agent.config)

    @api.post("/pull", status_code=202, response_model=OperationView)
    async def pull_image(body: ImagePull, wait: Wait = False, callback_url: Callback = None) -> Response:
        """Pull with skopeo; the operation's `progress` is skopeo's latest line (`Copying blob sha256:…`), its
        result the image as `GET /v1/images/{name}` shows it."""
        if callback_url is not None:
            targets.check(callback_url, "callback_url")

        def work() -> dict[str, Any]:
            return view(engine.pull_image(body.reference, body.name))

        operation = operations.submit("image-pull", None, work, callback_url=callback_url)
        return await agent.respond(operation, wait)

    return api

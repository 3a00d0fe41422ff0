"""Everything the routes share: config, engine, operations, auth."""

from dataclasses import dataclass, field

from fastapi import Response
from fastapi.responses import JSONResponse

from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operation, Operations
from vmhost.api.stats import StatsHistory
from vmhost.config import HostConfig
from vmhost.drivers.base import EventSource
from vmhost.engine import Engine
from vmhost.fleet.control import Fleet
from vmhost.fleet.reconciler import Reconciler

WAIT_LIMIT = 900.0


@dataclass
class Agent:
    config: HostConfig
    engine: Engine
    operations: Operations
    auth: TokenAuth
    monitor: EventSource
    fleet: Fleet | None = None
    """The fleet's desired state in etcd ([fleet] in the config); None on a stand-alone host."""
    reconciler: Reconciler | None = None
    """This host's reconciler of that desired state (started once recovery is done)."""
    stats: StatsHistory = field(init=False)
    """The last minutes of each running VM's counters (sampled while the agent serves)."""

    def __post_init__(self) -> None:
        self.stats = StatsHistory(self.engine)

    async def respond(self, operation: Operation, wait: bool) -> Response:
        """202 with the operation at once; with wait, the finished operation (or its error and status)."""
        if not wait:
            return JSONResponse(
                operation.view(), status_code=202, headers={"Location": f"/v1/operations/{operation.id}"}
            )
        await operation.finished(WAIT_LIMIT)
        if operation.error is not None:
            return JSONResponse({**operation.error, "operation": operation.id}, status_code=operation.status)
        return JSONResponse(operation.view(), status_code=200)

"""The ZStack dialect as a first-party plugin: the same mechanism third-party extensions use."""

from fastapi import APIRouter

from vmhost import __version__
from vmhost.api.agent import Agent
from vmhost.api.zstack.routes import router
from vmhost.plugins import VmhostPlugin


class ZStackDialect(VmhostPlugin):
    name = "zstack"
    version = __version__
    priority = 0

    def dialect_router(self, agent: Agent) -> APIRouter:
        return router(agent)

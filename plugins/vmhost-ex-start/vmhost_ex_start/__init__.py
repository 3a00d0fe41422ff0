"""vmhost plugin ex-start: an extended ZStack-style start command on a listener of its own.

POST /ex/vm/start (port 7071 unless `[plugins.ex-start] port` says otherwise) takes ZStack's StartVmCmd
plus a watchdog device and vCPU pinning (see command.py), and starts the VM as /vm/start does.
"""

from collections.abc import Mapping
from typing import Any

import typer
from lxml import etree
from pydantic import Field

from vmhost.api.agent import Agent
from vmhost.plugins import Listener, VmhostPlugin
from vmhost.spec import VMSpec
from vmhost.spec.base import SpecModel
from vmhost_ex_start.cli import commands
from vmhost_ex_start.render import add_devices
from vmhost_ex_start.routes import start_router
from vmhost_ex_start.spec import PLUGIN, ExStartBlock

__all__ = ["ExStartPlugin"]

DEFAULT_PORT = 7071


class ExStartSettings(SpecModel):
    """The config file's [plugins.ex-start] table."""

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Where the extended start command is served.")


class ExStartPlugin(VmhostPlugin):
    name = PLUGIN
    version = "0.1.0"
    spec_model = ExStartBlock

    def __init__(self) -> None:
        super().__init__()
        self.options = ExStartSettings()

    def configure(self, settings: Mapping[str, Any]) -> None:
        super().configure(settings)
        self.options = ExStartSettings.model_validate(settings)

    def render(self, spec: VMSpec, domain: etree._Element) -> None:
        add_devices(spec, domain)

    def listeners(self, agent: Agent) -> list[Listener]:
        return [Listener(self.options.port, start_router(agent))]

    def cli(self) -> typer.Typer:
        return commands()

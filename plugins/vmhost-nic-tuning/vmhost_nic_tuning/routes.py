"""GET /ext/nic-tuning/vms/{name}: what the plugin did to a VM's devices at its last start."""

from typing import Any

from fastapi import APIRouter

from vmhost.api.agent import Agent
from vmhost.engine.resources import vm_dir
from vmhost.errors import NotFound
from vmhost_nic_tuning.tuning import load_record


def record_router(agent: Agent) -> APIRouter:
    api = APIRouter(tags=["nic-tuning"])

    @api.get("/vms/{name}")
    def tuning_record(name: str) -> dict[str, Any]:
        """The record written in the VM's paused window: devices, features, before and after, domain state."""
        vm = agent.engine.record(name)
        record = load_record(vm_dir(agent.config.data_dir, vm.uuid))
        if record is None:
            raise NotFound(f"no NIC tuning recorded for {name}: it has not started with the plugin enabled")
        return record

    return api

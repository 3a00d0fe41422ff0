"""vmhost plugin nic-tuning: host-side NIC settings in the paused window of a start.

Before the guest first runs, every host-side device of the VM (its taps) gets offloads turned off with
`ethtool -K`, as edge hypervisor managers do before unpausing; the result is checked with `ethtool -k` and
recorded in the VM's directory (nic-tuning.json, GET /ext/nic-tuning/vms/{name}). A failure refuses the
start, which vmhost then rolls back.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter

from vmhost.api.agent import Agent
from vmhost.plugins import HookContext, VmhostPlugin
from vmhost_nic_tuning.routes import record_router
from vmhost_nic_tuning.spec import PLUGIN, NicTuningBlock, NicTuningSettings
from vmhost_nic_tuning.tuning import TuningRecord, forget, tune

__all__ = ["NicTuningPlugin"]


class NicTuningPlugin(VmhostPlugin):
    name = PLUGIN
    version = "0.1.0"
    spec_model = NicTuningBlock

    def __init__(self) -> None:
        super().__init__()
        self.options = NicTuningSettings()

    def configure(self, settings: Mapping[str, Any]) -> None:
        super().configure(settings)
        self.options = NicTuningSettings.model_validate(settings)

    def features_for(self, block: NicTuningBlock | None) -> list[str]:
        """The VM's own list if its spec has one, else the host's."""
        return block.features if block is not None and block.features else self.options.features

    def start_paused(self, ctx: HookContext) -> None:
        block: NicTuningBlock | None = ctx.spec.extension(PLUGIN)
        if block is not None and not block.enabled:
            forget(ctx.vm_dir)
            ctx.note("left the NICs as they are: disabled by the VM's spec")
            return
        name, features = ctx.spec.name, self.features_for(block)
        state = ctx.driver.state(name)
        devices = [tune(self.options.ethtool, device, features) for device in ctx.driver.interfaces(name)]
        TuningRecord(vm=name, domain_state=state.value, devices=devices).save(ctx.vm_dir)
        tuned = ", ".join(device.device for device in devices) or "no host-side devices"
        ctx.note(f"turned {', '.join(features)} off on {tuned} (domain {state.value})")

    def router(self, agent: Agent) -> APIRouter:
        return record_router(agent)

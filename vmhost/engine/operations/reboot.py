"""reboot: ask the guest (ACPI), or with force reset the machine; the VM stays running either way."""

from vmhost.drivers.base import Capability
from vmhost.engine.core import Core
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import Conflict


class Reboot(Declared):
    kind = "reboot"

    def __init__(self, core: Core, name: str, uuid: str, force: bool = False):
        super().__init__(core, name, uuid)
        self.force = force

    def steps(self) -> tuple[Step, ...]:
        driver = self.core.driver
        return (Step("requested", lambda: (driver.reset if self.force else driver.request_reboot)(self.name)),)


def reboot(core: Core, name: str, force: bool = False) -> None:
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.REBOOT)
        if core.observe(record) != VmState.RUNNING:
            raise Conflict(f"{record.name} is not running")
        run(Reboot(core, record.name, record.uuid, force))

"""kill: the emergency stop. No pre-hook can hold it up; after-stop hooks still run."""

from vmhost.engine.core import Core
from vmhost.engine.hooks import Phase
from vmhost.engine.operations.stop import Stop
from vmhost.engine.steps import run


class Kill(Stop):
    kind = "kill"


def kill(core: Core, name: str) -> None:
    with core.locked(name) as record:
        run(Kill(core, record.name, record.uuid, force=True))
    core.post_hooks([Phase.AFTER_STOP], core.spec_of(record))

"""One module per operation; each declares its steps. OPERATIONS maps a journaled kind to its class, the one
lookup recovery makes."""

from vmhost.engine.operations.attach_disk import AttachDisk
from vmhost.engine.operations.create import Create
from vmhost.engine.operations.delete import Delete
from vmhost.engine.operations.detach_disk import DetachDisk
from vmhost.engine.operations.incoming import Incoming, IncomingFinish
from vmhost.engine.operations.kill import Kill
from vmhost.engine.operations.migrate import Migrate
from vmhost.engine.operations.pause import Pause
from vmhost.engine.operations.reboot import Reboot
from vmhost.engine.operations.resume import Resume
from vmhost.engine.operations.snapshot_create import CreateSnapshot
from vmhost.engine.operations.snapshot_delete import DeleteSnapshot
from vmhost.engine.operations.snapshot_revert import RevertSnapshot
from vmhost.engine.operations.start import Start
from vmhost.engine.operations.stop import Stop
from vmhost.engine.operations.update import Update
from vmhost.engine.steps import Declared

OPERATIONS: dict[str, type[Declared]] = {
    kind.kind: kind
    for kind in (
        Create,
        Start,
        Stop,
        Kill,
        Reboot,
        Pause,
        Resume,
        Update,
        Delete,
        AttachDisk,
        DetachDisk,
        CreateSnapshot,
        RevertSnapshot,
        DeleteSnapshot,
        Migrate,
        Incoming,
        IncomingFinish,
    )
}

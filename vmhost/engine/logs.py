"""Follow a VM's console log (a container's stdout/stderr) as it grows, like `tail -f`, until the VM is gone."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_INTERVAL = 0.2
CHUNK = 1 << 16


def follow(path: Path, alive: Callable[[], bool], poll: float = POLL_INTERVAL) -> Iterator[bytes]:
    """Everything the log holds, then each new chunk; ends once the VM is gone and the log has stopped growing."""
    offset = 0
    while True:
        running = alive()
        data = read_from(path, offset)
        if data:
            offset += len(data)
            yield data
        elif not running:
            return
        else:
            time.sleep(poll)


BOOT_MARK = "--- vmhost: boot of {name} at {time} ---"


def mark_boot(path: Path, name: str) -> None:
    """One line before each boot's output, so that `console --log` tells the boots apart (virtlogd appends)."""
    if not path.parent.is_dir():
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with path.open("ab") as log:
        log.write(("\n" + BOOT_MARK.format(name=name, time=stamp) + "\n").encode())


def read_from(path: Path, offset: int) -> bytes:
    """Up to one chunk of the log from `offset`; nothing while the log does not exist yet."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read(CHUNK)
    except FileNotFoundError:
        return b""

"""Waiting on file descriptors without select(): select() fails outright on a descriptor numbered 1024 or more,
which a long-running agent with many VMs, connections and logs reaches."""

import select


def wait_readable(fd: int, timeout: float) -> bool:
    """True once `fd` is readable (or at EOF / hung up), False when `timeout` seconds passed first."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0.0, timeout) * 1000))

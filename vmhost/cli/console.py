"""Interactive serial console: raw terminal in, console stream out, Ctrl-] to leave."""

import os
import select
import sys
import termios
import threading
import tty

from vmhost.drivers.base import ConsoleStream

ESCAPE = b"\x1d"


def attach(stream: ConsoleStream) -> None:
    """Copy the guest console to stdout while forwarding keystrokes until Ctrl-] or the VM stops."""
    stop = threading.Event()

    def pump_out() -> None:
        try:
            while not stop.is_set():
                data = stream.read(0.2)
                if data:
                    os.write(sys.stdout.fileno(), data)
        except EOFError:
            stop.set()

    reader = threading.Thread(target=pump_out, daemon=True)
    reader.start()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        if saved is not None:
            tty.setraw(fd)
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 1024)
            if not data or ESCAPE in data:
                break
            stream.write(data)
    finally:
        stop.set()
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        reader.join(timeout=1)
        stream.close()

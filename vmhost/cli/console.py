"""Interactive serial console: raw terminal in, console stream out, Ctrl-] to leave."""

import os
import re
import select
import sys
import termios
import threading
import tty

from vmhost.drivers.base import ConsoleStream

ESCAPE = b"\x1d"
CONTROL_SEQUENCES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles
    rb"|\x1b[@-Z\\-_]"  # other two-byte escapes
    rb"|\r(?!\n)|[\x00-\x08\x0b-\x1f\x7f]"  # carriage returns and other C0 controls (tabs and newlines stay)
)


def plain_text(data: bytes) -> bytes:
    """A console log as text: what a terminal would interpret (colours, cursor moves, titles) left out."""
    return CONTROL_SEQUENCES.sub(b"", data.replace(b"\r\n", b"\n"))


def last_lines(data: bytes, count: int) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:])


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

"""The one way vmhost runs a host command (runc, xl, vmadm, qemu-img, ip, ethtool, skopeo): an argv list, never a
shell, a deadline on every call, and failures in vmhost's words.

A command that cannot be executed (not installed, not executable) is Unavailable: the host lacks a tool, the
request may be fine. A non-zero exit is whatever the caller's `translate` makes of it, since only the caller knows
what the command's exit status and stderr mean.
"""

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from vmhost.errors import HypervisorError, Unavailable, VmhostError

Done = subprocess.CompletedProcess[str]


def run(
    argv: Sequence[str],
    timeout: float,
    *,
    translate: Callable[[Done], VmhostError] | None = None,
    missing: str | None = None,
    timed_out: Callable[[], VmhostError] | None = None,
) -> Done:
    """Run `argv` to completion within `timeout` seconds, stdout and stderr captured as text.

    `translate` gives the error for a non-zero exit (None: the caller reads the exit status itself), `missing` the
    Unavailable message when argv[0] cannot be executed, `timed_out` the error when the deadline passes.
    """
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)  # noqa: S603
    except OSError as exc:
        raise Unavailable(missing or f"{argv[0]} cannot be run on this host", str(exc)) from None
    except subprocess.TimeoutExpired:
        raise (timed_out() if timed_out else _timed_out(argv, timeout)) from None
    if done.returncode != 0 and translate is not None:
        raise translate(done)
    return done


def spawn(argv: Sequence[str], *, missing: str | None = None) -> "subprocess.Popen[str]":
    """A command left running (a graceful stop that waits on the guest), in its own session, its stderr kept."""
    try:
        return subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except OSError as exc:
        raise Unavailable(missing or f"{argv[0]} cannot be run on this host", str(exc)) from None


def _timed_out(argv: Sequence[str], timeout: float) -> VmhostError:
    return HypervisorError(f"{' '.join(argv[:2])} did not finish within {timeout:g}s")


def stream(
    argv: Sequence[str],
    timeout: float,
    on_line: Callable[[str], None],
    *,
    watch: Callable[[], None] | None = None,
    missing: str | None = None,
) -> tuple[int, list[str]]:
    """Run `argv` and hand each line it prints (stdout and stderr merged) to `on_line` as it comes: a long copy
    that shows its progress. `watch` runs about twice a second and may raise to abort (the process is killed);
    so does the deadline. Returns the exit status and every line printed."""
    if timeout <= 0:
        raise _timed_out(argv, timeout)
    try:
        process = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    except OSError as exc:
        raise Unavailable(missing or f"{argv[0]} cannot be run on this host", str(exc)) from None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while (line := _next_line(lines, deadline, argv, timeout)) is not None:
            if line:
                printed.append(line)
                on_line(line)
            if watch is not None:
                watch()
        return process.wait(max(deadline - time.monotonic(), 0.0)), printed
    except subprocess.TimeoutExpired:
        raise _timed_out(argv, timeout) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _pump(process: "subprocess.Popen[str]", lines: "queue.Queue[str | None]") -> None:
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
    lines.put(None)


def _next_line(lines: "queue.Queue[str | None]", deadline: float, argv: Sequence[str], timeout: float) -> str | None:
    """The next line, "" when none came within half a second (time to watch), None at the end of the output."""
    if time.monotonic() > deadline:
        raise _timed_out(argv, timeout)
    try:
        return lines.get(timeout=0.5)
    except queue.Empty:
        return ""

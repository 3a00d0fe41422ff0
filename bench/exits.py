"""Measurements 5 and 6: how soon the agent tells about a VM that went away, measured against libvirt itself.

5. QEMU SIGKILLed: from the kill until the `crashed` event arrives on a GET /v1/events?follow=true stream that
   was open before, next to the time libvirt itself first reports the domain shut off.
6. Graceful stop: POST /v1/vms/{name}/stop?wait=true; from the moment libvirt first reports the domain shut off
   (the guest powered off on the ACPI button) until the HTTP response is back.

libvirt's view comes from libvirt-python's `dom.state()` on a connection of our own, polled every 10 ms in a
thread. All timestamps are `time.time()`, so they compare with the agent's own event and operation times.
"""

import json
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import libvirt
from harness import PREFIX, SETTLE, URI, Api, BenchError, Made, Series, Settings, create_agent_vms, minus, progress

POLL_INTERVAL = 0.01  # seconds between two libvirt state polls
BOOT_TIMEOUT = 180.0  # TCG on a loaded 2-core host
EVENT_TIMEOUT = 30.0
STOP_TIMEOUT = 60  # the guest gets this long to power off before the agent would destroy it
READY = "VMHOST-GUEST-READY"


def _silence_libvirt(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr unless a handler is set; the poller handles its own."""


# ---- helpers ---------------------------------------------------------------------------------------


class EventStream:
    """GET /v1/events?follow=true for one VM, read in a thread; each event gets the time it arrived."""

    def __init__(self, api: Api, vm: str, since: float):
        self._client = httpx.Client(
            base_url=str(api.client.base_url),
            headers={"Authorization": api.client.headers["Authorization"]},
            timeout=httpx.Timeout(10.0, read=None),
        )
        self._events: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        params = {"vm": vm, "follow": "true", "since": str(since)}
        threading.Thread(target=self._follow, args=(params,), daemon=True).start()

    def _follow(self, params: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", "/v1/events", params=params) as response:
                if response.status_code != 200:
                    raise BenchError(f"GET /v1/events: HTTP {response.status_code}: {response.read()[:500]!r}")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received = time.time()
                        event = json.loads(line.removeprefix("data: "))
                        event["received"] = received
                        self._events.put(event)
            raise BenchError("the agent closed the event stream")
        except BaseException as exc:  # handed to the waiting thread
            self._events.put(exc)

    def wait(self, timeout: float, **fields: Any) -> dict[str, Any]:
        """The next event with these fields; earlier events that do not match are skipped."""
        end = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no event {fields} within {timeout:.0f}s") from None
            if isinstance(event, BaseException):
                raise BenchError(f"event stream: {event}") from event
            if all(event.get(key) == value for key, value in fields.items()):
                return event

    def close(self) -> None:
        """Closing the client ends the reader thread's request (its error then goes unread)."""
        self._client.close()


class ShutoffWatch:
    """Polls libvirt's state of one domain every 10 ms in a thread; when it first reported shut off.

    Use it as a context manager: entering returns once the first poll saw the domain still up.
    """

    def __init__(self, dom: libvirt.virDomain):
        self._dom = dom
        self._stop = threading.Event()
        self._first = threading.Event()
        self.first_state: int | None = None
        self.off_at: float | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "ShutoffWatch":
        self._thread.start()
        if not self._first.wait(EVENT_TIMEOUT):
            raise BenchError(f"libvirt did not answer a state poll of {self._dom.name()}")
        if self.first_state == libvirt.VIR_DOMAIN_SHUTOFF:
            raise BenchError(f"{self._dom.name()} was already shut off when the watch began")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                state: int | None = self._dom.state()[0]
            except libvirt.libvirtError:
                state = None
            now = time.time()
            if not self._first.is_set():
                self.first_state = state
                self._first.set()
            if state == libvirt.VIR_DOMAIN_SHUTOFF:
                self.off_at = now
                return
            self._stop.wait(POLL_INTERVAL)

    def result(self, timeout: float) -> float:
        """When libvirt first said shut off (the poll that saw it returned); BenchError if it never did."""
        self._thread.join(timeout)
        if self.off_at is None:
            raise BenchError(f"libvirt did not report {self._dom.name()} shut off within {timeout:.0f}s")
        return self.off_at


def qemu_pid(name: str) -> int:
    """libvirt's pid file for the domain's QEMU process, as tests/integration/test_resilience.py kills it."""
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    except (OSError, ValueError) as exc:
        raise BenchError(f"no QEMU pid for {name}: {exc}") from exc


def boot(api: Api, name: str) -> None:
    """Start through the API and wait until the guest printed READY once more on its console (the log appends)."""
    before = api.console_log(name).count(READY)
    api.start(name)
    end = time.monotonic() + BOOT_TIMEOUT
    while api.console_log(name).count(READY) <= before:
        if time.monotonic() > end:
            raise BenchError(f"{name} did not print {READY} within {BOOT_TIMEOUT:.0f}s")
        time.sleep(0.2)


# ---- the measurements ------------------------------------------------------------------------------


@dataclass
class CrashResult:
    """Seconds after the SIGKILL, per run."""

    received: Series = field(default_factory=Series)  # the `crashed` event arrived on the stream
    libvirt: Series = field(default_factory=Series)  # libvirt first reported shut off
    published: Series = field(default_factory=Series)  # the agent published the event (its `time` field)
    reasons: list[str] = field(default_factory=list)

    @property
    def agent(self) -> Series:
        """Libvirt reported shut off → the event arrived: the agent's share (event delivery included)."""
        return minus(self.received, self.libvirt)


@dataclass
class StopResult:
    """Seconds, per run."""

    poweroff: Series = field(default_factory=Series)  # stop requested → libvirt first reported shut off
    finished: Series = field(default_factory=Series)  # libvirt shut off → the agent finished the operation
    returned: Series = field(default_factory=Series)  # libvirt shut off → the HTTP response was back
    round_trip: Series = field(default_factory=Series)  # stop requested → the HTTP response was back
    methods: list[str] = field(default_factory=list)


@contextmanager
def _libvirt_domain(name: str) -> Iterator[libvirt.virDomain]:
    """The domain on a libvirt connection of our own (the agent never sees these calls)."""
    libvirt.registerErrorHandler(_silence_libvirt, None)
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        raise BenchError(f"cannot open {URI}: {exc}") from exc
    try:
        yield conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        raise BenchError(f"libvirt: {exc}") from exc
    finally:
        conn.close()


def bench_crash(api: Api, made: Made, settings: Settings) -> CrashResult:
    """SIGKILL the QEMU of a booted VM (restart_policy never); when the agent's `crashed` event arrives."""
    name = PREFIX + "crash"
    create_agent_vms(api, made, [name], settings.memory, restart_policy="never")
    result = CrashResult()
    stream = EventStream(api, name, since=time.time())
    try:
        with _libvirt_domain(name) as dom:
            for index in range(settings.exit_runs + 1):
                progress(f"crash detection {index}/{settings.exit_runs}")
                boot(api, name)
                stream.wait(EVENT_TIMEOUT, type="state", state="running")  # the stream is live before the kill
                pid = qemu_pid(name)
                with ShutoffWatch(dom) as watch:
                    killed = time.time()
                    os.kill(pid, signal.SIGKILL)
                    event = stream.wait(EVENT_TIMEOUT, type="state", state="crashed")
                    off = watch.result(EVENT_TIMEOUT)
                time.sleep(SETTLE)
                if index > 0:  # run 0 warms caches and connections
                    result.received.values.append(event["received"] - killed)
                    result.published.values.append(event["time"] - killed)
                    result.libvirt.values.append(off - killed)
                    result.reasons.append(event["reason"])
    finally:
        stream.close()
    return result


def bench_stop(api: Api, made: Made, settings: Settings) -> StopResult:
    """Graceful stop of a booted VM: when the HTTP response came back after libvirt reported it shut off."""
    name = PREFIX + "stop"
    create_agent_vms(api, made, [name], settings.memory, restart_policy="never")
    result = StopResult()
    with _libvirt_domain(name) as dom:
        for index in range(settings.exit_runs + 1):
            progress(f"graceful stop {index}/{settings.exit_runs}")
            boot(api, name)
            with ShutoffWatch(dom) as watch:
                requested = time.time()
                operation = api.call("POST", f"/v1/vms/{name}/stop?wait=true", {"timeout": STOP_TIMEOUT})
                returned = time.time()
                off = watch.result(EVENT_TIMEOUT)
            time.sleep(SETTLE)
            if index > 0:
                result.poweroff.values.append(off - requested)
                result.finished.values.append(float(operation["finished_at"]) - off)
                result.returned.values.append(returned - off)
                result.round_trip.values.append(returned - requested)
                result.methods.append(str((operation.get("result") or {}).get("method")))
    return result

"""The fleet on etcd vs each agent's own API (rows 18 and 19).

Run as root from the repository root:  .venv/bin/python bench/fleet.py [--quick]   (or bench/run.py --fleet)

It makes a fleet bed of its own with scripts/test-hosts.sh (`up 3 --fleet`: three hosts, each its own libvirtd and
agent, and one real etcd) next to any shared bed, and removes it at the end (also on Ctrl-C or an error).

18. 50 tiny guests (128 MiB, 1 vCPU) to 3 hosts: through the fleet (`POST /v1/fleet/vms` on host1's agent; the
    scheduler places each, host1..3 reconcile) vs created directly (`POST /v1/vms?start=true&wait=true`,
    round-robin over the three agents). Ten client threads on each side. Both sides are timed the same way:
    from releasing the requests until every host's own `GET /v1/vms` (polled every 50 ms) lists all 50 running.
    The fleet's own view (`GET /v1/fleet/vms`: state running at the desired generation) is reported beside it.
    The sides alternate which goes first, round by round; everything is deleted between them.
19. a desired-state change -> the owning agent has reconciled it: one fleet VM, its desired key written again
    with the next generation (the same spec), timed from the put until an etcd watch on the prefix delivers the
    agent's status at that generation (watch -> reconcile -> status write). Beside it, the same watch's delivery
    of our own put (etcd's notification latency, the floor) and, report only, a real change through the API
    (`POST /v1/fleet/vms` with a new label, updated live) until the status shows its generation.

It prints one table and the raw samples and exits 0 even when a target is missed.
"""

import argparse
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from harness import (
    REPO,
    BenchError,
    Series,
    each_parallel,
    fmt,
    guest_spec,
    interrupts_deferred,
    percentile,
    progress,
    quietly,
    terminate,
    wait_until,
)
from migrate import activity, render_table

sys.path.insert(0, str(REPO))  # the bed's Python side lives with the tests
from tests.multihost.testbed import TestBed, TestBedError, TestHost
from vmhost.config import FleetConfig
from vmhost.fleet.etcd import Change, Etcd
from vmhost.fleet.model import Keys

PREFIX = f"vmhost-bench-fleet-{secrets.token_hex(3)}-"
KEY_PREFIX = "/vmhost"
MEMORY = "128MiB"
VMS = 50
CLIENTS = 10
ALL_RUNNING_WAIT = 600.0
GONE_WAIT = 300.0
REACTION_WAIT = 10.0
"""Seconds one change may take to show in the status before the sample counts as missing."""
SETTLE = 2.0
"""Seconds after a side's VMs are gone, so QEMU teardown never overlaps the next side's starts."""
RATIO_TARGET = 1.3
P99_TARGET = 0.100


@dataclass(frozen=True)
class FleetSettings:
    mode: str
    rounds: int
    reactions: int
    api_changes: int


FULL = FleetSettings(mode="full", rounds=3, reactions=200, api_changes=50)
QUICK = FleetSettings(mode="quick", rounds=1, reactions=50, api_changes=10)


# ---- calls -----------------------------------------------------------------------------------------------------


def call(host: TestHost, method: str, path: str, body: Any = None, **params: str) -> Any:
    """One request to the host's agent; its JSON answer, or BenchError with the status and body."""
    try:
        with host.http(timeout=300) as client:
            response = client.request(method, path, json=body, params=params)
    except httpx.HTTPError as exc:
        raise BenchError(f"{host.name}: {method} {path}: {exc}") from exc
    if response.status_code >= 300 and not (method == "DELETE" and response.status_code == 404):
        raise BenchError(f"{host.name}: {method} {path}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def ours_running(hosts: list[TestHost]) -> dict[str, str]:
    """Each of our VMs any host's agent lists, and its state there."""
    found: dict[str, str] = {}
    for host in hosts:
        for row in call(host, "GET", "/v1/vms"):
            if row["name"].startswith(PREFIX):
                found[row["name"]] = row["state"]
    return found


def fleet_converged(host: TestHost, names: set[str]) -> bool:
    rows = [row for row in call(host, "GET", "/v1/fleet/vms") if row["name"] in names]
    return len(rows) == len(names) and all(
        row["state"] == "running" and row["observed_generation"] == row["generation"] for row in rows
    )


# ---- row 18: 50 VMs ----------------------------------------------------------------------------------------------


@dataclass
class Many:
    direct: Series = field(default_factory=Series)
    fleet: Series = field(default_factory=Series)
    fleet_status: Series = field(default_factory=Series)  # until the fleet's own view says all are running
    fleet_applied: Series = field(default_factory=Series)  # until the last apply returned
    spread: list[dict[str, int]] = field(default_factory=list)  # per fleet round: VMs per host


def released(actions: list[Callable[[], object]]) -> float:
    """Start the clock and run the actions on CLIENTS threads; the start time (perf_counter)."""
    began = time.perf_counter()
    each_parallel(actions, workers=CLIENTS)
    return began


def run_direct(hosts: list[TestHost], names: list[str]) -> float:
    began = released(
        [
            partial(call, hosts[i % len(hosts)], "POST", "/v1/vms", guest_spec(name, MEMORY), start="true", wait="true")
            for i, name in enumerate(names)
        ]
    )
    done = wait_until(lambda: _all_running(hosts, names), f"{len(names)} VMs created directly", ALL_RUNNING_WAIT)
    return done - began


def remove_direct(hosts: list[TestHost], names: list[str]) -> None:
    each_parallel(
        [
            partial(call, hosts[i % len(hosts)], "DELETE", f"/v1/vms/{name}", force="true", wait="true")
            for i, name in enumerate(names)
        ],
        workers=CLIENTS,
    )
    wait_until(lambda: not ours_running(hosts), "the direct VMs gone", GONE_WAIT)


def run_fleet(hosts: list[TestHost], names: list[str], result: Many) -> float:
    applied: list[float] = []
    lock = threading.Lock()

    def apply(name: str) -> None:
        call(hosts[0], "POST", "/v1/fleet/vms", {"spec": guest_spec(name, MEMORY)})
        with lock:
            applied.append(time.perf_counter())

    began = released([partial(apply, name) for name in names])
    done = wait_until(lambda: _all_running(hosts, names), f"{len(names)} VMs through the fleet", ALL_RUNNING_WAIT)
    status = wait_until(lambda: fleet_converged(hosts[0], set(names)), "the fleet's status", ALL_RUNNING_WAIT)
    result.fleet_applied.values.append(max(applied) - began)
    result.fleet_status.values.append(status - began)
    spread: dict[str, int] = {}
    for row in call(hosts[0], "GET", "/v1/fleet/vms"):
        if row["name"] in names:
            spread[row["host"]] = spread.get(row["host"], 0) + 1
    result.spread.append(spread)
    return done - began


def remove_fleet(hosts: list[TestHost], names: list[str]) -> None:
    each_parallel([partial(call, hosts[0], "DELETE", f"/v1/fleet/vms/{name}") for name in names], workers=CLIENTS)
    wait_until(lambda: not ours_running(hosts), "the fleet's VMs gone", GONE_WAIT)


def _all_running(hosts: list[TestHost], names: list[str]) -> bool:
    found = ours_running(hosts)
    return all(found.get(name) == "running" for name in names)


def bench_many(hosts: list[TestHost], rounds: int) -> Many:
    result = Many()
    for index in range(rounds):
        order = ("direct", "fleet") if index % 2 == 0 else ("fleet", "direct")
        for side in order:
            names = [f"{PREFIX}{side[0]}{index}-{i:02d}" for i in range(VMS)]
            progress(f"round {index + 1}/{rounds}: {VMS} VMs {side}")
            if side == "direct":
                result.direct.values.append(run_direct(hosts, names))
                remove_direct(hosts, names)
            else:
                result.fleet.values.append(run_fleet(hosts, names, result))
                remove_fleet(hosts, names)
            time.sleep(SETTLE)
    return result


# ---- row 19: reaction to a desired change -----------------------------------------------------------------------


class Watched:
    """Every change under the fleet's prefix from now on, stamped (perf_counter) as the watch delivers it."""

    def __init__(self, etcd: Etcd):
        self.changes: queue.Queue[tuple[float, Change]] = queue.Queue()
        self.failure: Exception | None = None
        self._stop = threading.Event()
        self._etcd = etcd
        start = etcd.revision() + 1
        self._thread = threading.Thread(target=self._read, args=(start,), name="bench-watch", daemon=True)
        self._thread.start()

    def _read(self, start: int) -> None:
        try:
            for change in self._etcd.watch(KEY_PREFIX + "/", start, self._stop):
                self.changes.put((time.perf_counter(), change))
        except Exception as exc:  # reported by next(): the samples need the stream
            self.failure = exc

    def until(self, match: Callable[[Change], bool], deadline: float) -> float | None:
        """When the first change that matches arrived (changes before it are dropped); None at the deadline."""
        while (left := deadline - time.perf_counter()) > 0:
            if self.failure is not None:
                raise BenchError(f"the etcd watch failed: {self.failure}")
            try:
                at, change = self.changes.get(timeout=left)
            except queue.Empty:
                return None
            if match(change):
                return at
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Reaction:
    reconciled: Series = field(default_factory=Series)  # put -> status at the new generation
    notified: Series = field(default_factory=Series)  # put -> the watch delivers that put (etcd's own latency)
    via_api: Series = field(default_factory=Series)  # POST /v1/fleet/vms (new label) -> status at its generation
    missing: int = 0


def status_at(keys: Keys, host: str, vm: str, generation: int) -> Callable[[Change], bool]:
    key = keys.status(host, vm)
    return lambda c: c.key == key and c.value is not None and c.value.get("observed_generation") == generation


def bench_reaction(hosts: list[TestHost], settings: FleetSettings) -> Reaction:
    etcd = Etcd(FleetConfig(etcd_endpoints=(str(hosts[0].etcd_endpoint),), host_name="bench"))
    keys = Keys(KEY_PREFIX)
    vm = PREFIX + "react"
    where = call(hosts[0], "POST", "/v1/fleet/vms", {"spec": guest_spec(vm, MEMORY), "host": hosts[1].name})["host"]
    wait_until(lambda: fleet_converged(hosts[0], {vm}), f"{vm} running through the fleet", ALL_RUNNING_WAIT)
    result = Reaction()
    watched = Watched(etcd)
    try:
        desired_key = keys.desired(where, vm)
        for index in range(settings.reactions):
            if index % 50 == 0:
                progress(f"desired change -> reconciled: sample {index + 1}/{settings.reactions}")
            entry = etcd.get(desired_key)
            if entry is None:
                raise BenchError(f"{desired_key} is gone")
            generation = int(entry.value["generation"]) + 1
            began = time.perf_counter()
            etcd.put(desired_key, {**entry.value, "generation": generation})
            deadline = began + REACTION_WAIT
            notified = watched.until(lambda c, g=generation: c.key == desired_key and _generation(c) == g, deadline)
            reconciled = watched.until(status_at(keys, where, vm, generation), deadline)
            if notified is None or reconciled is None:
                result.missing += 1
                continue
            result.notified.values.append(notified - began)
            result.reconciled.values.append(reconciled - began)
        spec = call(hosts[0], "GET", f"/v1/fleet/vms/{vm}")["spec"]
        for index in range(settings.api_changes):
            if index % 10 == 0:
                progress(f"label change through the API -> reconciled: sample {index + 1}/{settings.api_changes}")
            changed = {**spec, "labels": {**spec.get("labels", {}), "bench": str(index)}}
            began = time.perf_counter()
            generation = call(hosts[0], "POST", "/v1/fleet/vms", {"spec": changed})["generation"]
            reconciled = watched.until(status_at(keys, where, vm, generation), began + REACTION_WAIT)
            if reconciled is None:
                result.missing += 1
                continue
            result.via_api.values.append(reconciled - began)
    finally:
        watched.close()
    call(hosts[0], "DELETE", f"/v1/fleet/vms/{vm}")
    wait_until(lambda: not ours_running(hosts), f"{vm} gone", GONE_WAIT)
    return result


def _generation(change: Change) -> int | None:
    return None if change.value is None else int(change.value.get("generation", 0))


# ---- report ------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    many: Many
    reaction: Reaction
    activity: list[str]


def _p(series: Series, pct: int) -> str:
    return fmt(percentile(series.values, pct)) if len(series.values) > 1 else "n/a"


def table_rows(results: Results) -> list[list[str]]:
    many, reaction = results.many, results.reaction
    ratio = many.fleet.median / many.direct.median
    p99 = percentile(reaction.reconciled.values, 99) if len(reaction.reconciled.values) > 1 else float("inf")
    return [
        [
            "18",
            f"{VMS} VMs to 3 hosts, time to all running, median of {len(many.fleet.values)}",
            f"fleet {fmt(many.fleet.median)}",
            f"direct {fmt(many.direct.median)}",
            f"fleet/direct {ratio:.3f}",
            f"<= {RATIO_TARGET:.2f}",
            "ok" if ratio <= RATIO_TARGET else "MISSED",
        ],
        [
            "18",
            "  until the fleet's own status says so",
            f"fleet {fmt(many.fleet_status.median)}",
            "-",
            f"{many.fleet_status.median / many.direct.median:.3f}",
            "report only",
            "-",
        ],
        [
            "19",
            f"desired change -> reconciled (status at it), n={len(reaction.reconciled.values)}",
            f"p50 {_p(reaction.reconciled, 50)}, p99 {fmt(p99)}",
            f"etcd watch p50 {_p(reaction.notified, 50)}, p99 {_p(reaction.notified, 99)}",
            f"p99 {fmt(p99)}",
            f"<= {fmt(P99_TARGET)}",
            "ok" if p99 <= P99_TARGET else "MISSED",
        ],
        [
            "19",
            f"  label change via POST /v1/fleet/vms -> reconciled, n={len(reaction.via_api.values)}",
            f"p50 {_p(reaction.via_api, 50)}, p99 {_p(reaction.via_api, 99)}",
            "-",
            "-",
            "report only",
            "-",
        ],
    ]


def raw_lines(results: Results) -> list[tuple[str, str]]:
    many, reaction = results.many, results.reaction
    lines = [
        ("18 direct, to all running", many.direct.describe()),
        ("18 fleet, to all running", many.fleet.describe()),
        ("18 fleet, to the last apply answered", many.fleet_applied.describe()),
        ("18 fleet, to the fleet's status all running", many.fleet_status.describe()),
        ("18 fleet placement per round", "; ".join(str(dict(sorted(s.items()))) for s in many.spread)),
        ("19 put -> etcd watch delivers it", _summary(reaction.notified)),
        ("19 put -> status at the new generation", _summary(reaction.reconciled)),
        ("19 label change via the API -> status", _summary(reaction.via_api)),
    ]
    if reaction.missing:
        lines.append(("19 samples missing (no status within 10 s)", str(reaction.missing)))
    return lines


def _summary(series: Series) -> str:
    if len(series.values) < 2:
        return "n/a"
    values = series.values
    return (
        f"n={len(values)} min {fmt(min(values))} p50 {_p(series, 50)} p90 {_p(series, 90)} p99 {_p(series, 99)} "
        f"max {fmt(max(values))}"
    )


def report(results: Results, settings: FleetSettings, hosts: list[TestHost]) -> str:
    header = ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"]
    width = max(len(label) for label, _ in raw_lines(results))
    return "\n".join(
        [
            "vmhost fleet benchmarks (fleet test bed: 3 hosts, one etcd)",
            f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; nproc={os.cpu_count()}; "
            f"hosts {', '.join(h.name for h in hosts)}; etcd {hosts[0].etcd_endpoint} (TCG)",
            f"mode: {settings.mode} ({settings.rounds} round(s) of {VMS} VMs per side, {CLIENTS} client threads; "
            f"{settings.reactions} desired changes, {settings.api_changes} API changes; guests {MEMORY}, 1 vCPU)",
            "host activity: " + "; ".join(results.activity),
            "",
            render_table([header, *table_rows(results)]),
            "",
            "raw numbers:",
            *(f"  {label.ljust(width)}  {text}" for label, text in raw_lines(results)),
        ]
    )


# ---- setup and cleanup -------------------------------------------------------------------------------------------


def own_bed() -> TestBed:
    tag = secrets.token_hex(2)
    return TestBed(
        env={
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-fleetbench-{tag}",
            "VMHOST_TESTBED_PREFIX": f"vf{tag}",
            "VMHOST_TESTBED_SUBNET": f"10.234.{10 + secrets.randbelow(200)}",
        }
    )


def cleanup(hosts: list[TestHost]) -> None:
    """Our fleet VMs deleted from the fleet, then whatever of ours an agent still has (the bed goes after)."""
    progress("cleaning up")
    for row in _fleet_rows(hosts[0]):
        quietly(partial(call, hosts[0], "DELETE", f"/v1/fleet/vms/{row['name']}"))
    for host in hosts:
        for name in _local(host):
            quietly(partial(call, host, "DELETE", f"/v1/vms/{name}", force="true", wait="true"))


def _fleet_rows(host: TestHost) -> Iterator[dict[str, Any]]:
    try:
        yield from (row for row in call(host, "GET", "/v1/fleet/vms") if row["name"].startswith(PREFIX))
    except BenchError as exc:
        progress(f"cleanup: {exc}")


def _local(host: TestHost) -> list[str]:
    try:
        return [row["name"] for row in call(host, "GET", "/v1/vms") if row["name"].startswith(PREFIX)]
    except BenchError as exc:
        progress(f"cleanup: {exc}")
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples: a smoke run")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if os.geteuid() != 0:
        print("error: run as root (the test bed needs it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    bed, hosts = own_bed(), None
    try:
        progress(f"making a fleet bed of 3 hosts ({dict(bed.env)})")
        hosts = bed.up(3, fleet=True)
        progress(f"names {PREFIX}*")
        log = [activity("before")]
        many = bench_many(hosts, settings.rounds)
        reaction = bench_reaction(hosts, settings)
        log.append(activity("after"))
        results = Results(many, reaction, log)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except (BenchError, TestBedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        with interrupts_deferred():
            if hosts is not None:
                cleanup(hosts)
            quietly(bed.down)
    print(report(results, settings, hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

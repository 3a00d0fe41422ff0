"""`vmhost host`: the host's facts and what each of its drivers can do; the same from the local engine and an agent."""

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any

import typer
from rich.console import Console

from vmhost.cli import listing
from vmhost.cli.backend import Backend
from vmhost.drivers.base import Capability

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
FACTS = ("hostname", "agent_version", "hypervisor", "accel", "cpus", "memory", "vms")


def register(app: typer.Typer, backend: Callable[[], AbstractContextManager[Backend]], out: Console) -> None:
    @app.command("host")
    def host(as_json: JsonOption = False) -> None:
        """The host: hypervisor, CPUs, memory, VMs, and the capability matrix (which driver can pause, reboot...)."""
        with backend() as connection:
            report = connection.host()
        if as_json:
            out.print_json(json.dumps(report))
            return
        for line in fact_lines(report):
            out.print(line, markup=False, highlight=False)
        out.print("", markup=False)
        drivers = list(report["capabilities"])
        listing.render(
            matrix(report), ["capability", *drivers], as_json=False, parsable=False, header=True, console=out
        )


def fact_lines(report: dict[str, Any]) -> list[str]:
    memory = f"{_gib(report['memory_total'])} total, {_gib(report['memory_available'])} available"
    values = {**report, "memory": memory}
    width = max(len(fact) for fact in FACTS) + 1
    return [f"{fact + ':':<{width}} {values[fact]}" for fact in FACTS]


def matrix(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per capability, one column per driver: yes, or '-'."""
    capabilities: dict[str, list[str]] = report["capabilities"]
    return [
        {"capability": capability.value}
        | {driver: "yes" if capability.value in has else "-" for driver, has in capabilities.items()}
        for capability in Capability
    ]


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"

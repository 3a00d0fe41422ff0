"""`vmhost host`: the host's facts and what each of its drivers can do; `vmhost host shutdown`: its VMs stopped in
reverse startup order. The same from the local engine and an agent."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any

import typer
from rich.console import Console

from vmhost.cli import listing
from vmhost.cli.backend import Backend
from vmhost.cli.output import print_json
from vmhost.drivers.base import Capability
from vmhost.engine.restore import STATUSES, label

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
FACTS = ("hostname", "agent_version", "hypervisor", "accel", "cpus", "memory", "vms")


def register(app: typer.Typer, backend: Callable[[], AbstractContextManager[Backend]], out: Console) -> None:
    group = typer.Typer(help="The host: facts and capabilities; `shutdown` stops its VMs in reverse startup order.")
    app.add_typer(group, name="host")

    @group.callback(invoke_without_command=True)
    def host(ctx: typer.Context, as_json: JsonOption = False) -> None:
        """The host: hypervisor, CPUs, memory, VMs, and the capability matrix (which driver can pause, reboot...)."""
        if ctx.invoked_subcommand is not None:
            return
        with backend() as connection:
            report = connection.host()
        if as_json:
            print_json(out, report)
            return
        for line in fact_lines(report):
            out.print(line, markup=False, highlight=False)
        out.print("", markup=False)
        drivers = list(report["capabilities"])
        listing.render(
            matrix(report), ["capability", *drivers], as_json=False, parsable=False, header=True, console=out
        )

    @group.command("restore")
    def restore(as_json: JsonOption = False) -> None:
        """How far the agent's restore at its start got: each startup.order group and its VMs (needs --agent)."""
        with backend() as connection:
            view = connection.restore_progress()
        if as_json:
            print_json(out, view)
            return
        for line in restore_lines(view):
            out.print(line, markup=False, highlight=False)

    @group.command("shutdown")
    def shutdown(
        timeout: Annotated[
            float | None,
            typer.Option("--timeout", "-t", help="Seconds each graceful stop waits before forcing (stop_timeout)."),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Stop every VM for the host's shutdown: reverse startup order, restored at the next agent start.

        A startup.order group stops at once, each VM with the graceful deadline (ACPI, then forced)."""
        with backend() as connection:
            result = connection.shutdown_host(timeout)
        if as_json:
            print_json(out, result)
        else:
            for line in shutdown_lines(result):
                out.print(line, markup=False, highlight=False)
        if result["failed"]:  # exit 1 with --json too, as `evacuate --json` does
            raise typer.Exit(1)


def restore_lines(view: dict[str, Any]) -> list[str]:
    """The state and counts, then one line per startup.order group with its VMs' statuses and errors."""
    counts = ", ".join(f"{view[status]} {status}" for status in STATUSES if view[status])
    lines = [f"restore {view['state']}: {view['total']} VMs" + (f" ({counts})" if counts else "")]
    for group in view["groups"]:
        statuses = ", ".join(f"{name} {status}" for name, status in group["vms"].items())
        lines.append(f"group {label(group['order'])}: {statuses}")
    lines += [f"  {name}: {error}" for name, error in view["errors"].items()]
    return lines


def shutdown_lines(result: dict[str, Any]) -> list[str]:
    """One line per VM, in the order the groups went down, then the total."""
    lines = [
        f"group {label(group['order'])}: {name} {outcome}"
        for group in result["groups"]
        for name, outcome in group["vms"].items()
    ]
    total = result["stopped"] + len(result["failed"])
    return [*lines, f"stopped {result['stopped']} of {total} VMs in {result['seconds']:g} s"]


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

"""`vmhost fleet`: the desired state of a fleet of hosts, read and written through any of its agents: apply a
VM's spec, see where each VM is and how far its host got, drain a host for maintenance.

Only an agent serves it (the fleet lives in etcd, which the CLI never talks to): --agent, the config's agent_url,
else this host's own agent, as `vmhost events` finds it.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from vmhost.cli import listing
from vmhost.cli.output import print_json
from vmhost.client import AgentClient
from vmhost.spec import Problem, SpecError
from vmhost.spec.load import read_document

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
FileOption = Annotated[Path, typer.Option("-f", "--file", help="Spec document (JSON or YAML; - reads standard input).")]
VmArg = Annotated[str, typer.Argument(help="The VM's name (unique in the fleet).")]
HostArg = Annotated[str, typer.Argument(help="The fleet host's name.")]
VM_COLUMNS = ["vm", "host", "desired", "state", "gen", "error"]
HOST_COLUMNS = ["host", "alive", "schedulable", "vms", "vcpus", "memory", "labels"]
Connect = Callable[[], AbstractContextManager[AgentClient]]
"""Opens the agent to talk to, with the CLI's failure path around it (vmhost/cli/main.py _agent)."""
Say = Callable[[str], None]
UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def register(app: typer.Typer, agent: Connect, out: Console) -> None:
    """Add the `fleet` group to the main app (vmhost/cli/main.py); `agent` opens the agent it talks to."""
    group = typer.Typer(
        help="A fleet of hosts sharing one desired state (etcd): apply, list, drain...", no_args_is_help=True
    )
    app.add_typer(group, name="fleet")

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False)

    _vm_commands(group, agent, out, say)
    _host_commands(group, agent, out, say)


def _vm_commands(group: typer.Typer, agent: Connect, out: Console, say: Say) -> None:
    @group.command()
    def apply(
        file: FileOption,
        host: Annotated[
            str | None, typer.Option("--host", help="Place a new VM on this host (default: where it fits best).")
        ] = None,
        stopped: Annotated[bool, typer.Option("--stopped", help="Keep it defined but stopped.")] = False,
    ) -> None:
        """Make the fleet hold a VM as its spec says: a new one is placed on a host, a known one changed where it
        is; that host's agent then brings it there. Applying the same spec again changes nothing."""
        with agent() as client:
            document = read_document(file)
            if not isinstance(document, dict):
                raise SpecError([Problem("", f"{file} holds no spec: a spec is a mapping (a JSON object)")])
            applied = client.fleet_apply(document, host, "stopped" if stopped else "running")
        if applied["changed"]:
            say(f"applied {applied['vm']} to {applied['host']} (generation {applied['generation']})")
        else:
            say("nothing to change")

    @group.command("list")
    def list_vms(as_json: JsonOption = False) -> None:
        """The fleet's VMs: their host, desired and last reported state, and GEN: the generation of the spec
        their host has applied / the one desired. A VM on a host that is down is `unknown`."""
        with agent() as client:
            rows = client.fleet_list()
        if as_json:
            print_json(out, rows)
            return
        table = [vm_row(row) for row in rows]
        listing.render(table, VM_COLUMNS, as_json=False, parsable=False, header=True, console=out)

    @group.command()
    def get(vm: VmArg, as_json: JsonOption = False) -> None:
        """One fleet VM: its `fleet list` facts, why it is in its state, and its spec (secrets masked)."""
        with agent() as client:
            view = client.fleet_get(vm)
        if as_json:
            print_json(out, view)
            return
        for line in vm_lines(view):
            say(line)

    @group.command()
    def delete(vm: VmArg) -> None:
        """Take a VM out of the fleet: its host's agent then deletes it there."""
        with agent() as client:
            result = client.fleet_delete(vm)
        say(f"deleted {result['vm']} from the fleet (it was on {result['host']})")


def _host_commands(group: typer.Typer, agent: Connect, out: Console, say: Say) -> None:
    @group.command()
    def hosts(as_json: JsonOption = False) -> None:
        """The fleet's hosts, down ones too: whether new VMs may go there, and the vCPUs and memory its VMs
        claim of what it has (used/total)."""
        with agent() as client:
            rows = client.fleet_hosts()
        if as_json:
            print_json(out, rows)
            return
        table = [host_row(row) for row in rows]
        listing.render(table, HOST_COLUMNS, as_json=False, parsable=False, header=True, console=out)

    @group.command()
    def drain(
        host: HostArg,
        no_wait: Annotated[
            bool, typer.Option("--no-wait", help="Return once each VM has a new host, before it has moved.")
        ] = False,
    ) -> None:
        """Cordon a host (no new VMs go there) and move each of its VMs to another host, live when it runs.
        Exit 1 when a VM found no host to go to or did not move."""
        with agent() as client:
            result = client.fleet_drain(host, wait=not no_wait)
        for line in drain_lines(result, waited=not no_wait):
            say(line)
        if result["unplaced"] or result.get("left"):
            raise typer.Exit(1)

    @group.command()
    def uncordon(host: HostArg) -> None:
        """Let new VMs go to a drained host again (the VMs moved off it stay where they are)."""
        with agent() as client:
            result = client.fleet_uncordon(host)
        say(f"uncordoned {result['host']}: it takes new VMs again")


def vm_row(row: dict[str, Any]) -> dict[str, Any]:
    """A `fleet list` line; the state a host that is down last reported may no longer be true: `unknown`."""
    moving = f" -> {row['migrate_to']}" if row.get("migrate_to") else ""
    return {
        "vm": row["name"],
        "host": row["host"] + moving,
        "desired": row["desired_state"],
        "state": row["state"] if row["host_alive"] else "unknown",
        "gen": f"{row['observed_generation']}/{row['generation']}",
        "error": row["error"] or "-",
    }


def vm_lines(view: dict[str, Any]) -> list[str]:
    """Its facts, aligned, then its spec as YAML (what `fleet apply -f` takes)."""
    row = vm_row(view)
    facts = {
        "name": row["vm"],
        "host": row["host"] + ("" if view["host_alive"] else " (down)"),
        "desired": row["desired"],
        "state": row["state"] + (f" ({view['reason']})" if view["reason"] else ""),
        "generation": f"{row['gen']} (observed/desired)",
        "error": row["error"],
    }
    width = max(len(fact) for fact in facts) + 1
    spec = yaml.safe_dump(view["spec"], sort_keys=False)
    return [
        *(f"{fact + ':':<{width}} {value}" for fact, value in facts.items()),
        "spec:",
        *(f"  {line}" for line in spec.splitlines()),
    ]


def host_row(row: dict[str, Any]) -> dict[str, Any]:
    load = row["load"]
    return {
        "host": row["name"],
        "alive": "yes" if row["alive"] else "no",
        "schedulable": "yes" if row["schedulable"] else "no",
        "vms": load["vms"],
        "vcpus": f"{load['vcpus']}/{'-' if row['vcpus'] is None else row['vcpus']}",
        "memory": f"{human_size(load['memory'])}/{human_size(row['memory'])}",
        "labels": row["labels"] or "-",
    }


def drain_lines(result: dict[str, Any], waited: bool) -> list[str]:
    """The cordon, then each VM: where it went (or is going), or why it is still on the host."""
    host = result["host"]
    unplaced = {vm["vm"] for vm in result["unplaced"]}
    left = {row["name"]: row for row in result.get("left", []) if row["name"] not in unplaced}
    lines = [f"cordoned {host}: it takes no new VMs until `vmhost fleet uncordon {host}`"]
    for move in result["moves"]:
        stuck = left.pop(move["vm"], None)
        if stuck is None:
            lines.append(f"{move['vm']}: {'moved' if waited else 'moving'} to {move['to']}")
        else:
            lines.append(f"{move['vm']}: did not move to {move['to']}: {_why(stuck)}")
    lines += [f"{vm['vm']}: no host can take it: {vm['reason']}" for vm in result["unplaced"]]
    lines += [f"{name}: still on {host}: {_why(row)}" for name, row in left.items()]
    return lines


def _why(row: dict[str, Any]) -> str:
    return str(row["error"] or row["reason"] or "still there when the wait ended")


def human_size(value: int | None) -> str:
    """Bytes in the largest binary unit they reach, to a tenth: 512MiB, 15.6GiB."""
    if value is None:
        return "-"
    for unit, factor in UNITS:
        if value >= factor:
            return f"{value / factor:.1f}".removesuffix(".0") + unit
    return f"{value}B"

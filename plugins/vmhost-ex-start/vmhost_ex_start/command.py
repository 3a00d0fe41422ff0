"""The extended start command: ZStack's StartVmCmd plus the fields of this extension, as a vmhost spec document.

The base command goes through the core's ZStack converter unchanged; the extension's fields are:

- `watchdog: {model, action}`: a watchdog device (the spec block `extensions.ex-start.watchdog`).
- `vcpuPinning: [{vCpu, pCpuSet}]`: vCPU to host-CPU pinning (the spec's `cpu.pinning`), in the item shape
  ZStack's `addons.cpuPinning` uses, for callers that send pinning as a first-class field.

Errors name the command's own fields (`watchdog.model`, `vcpuPinning.0.vCpu`), as the core converter does.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from vmhost.dialects.zstack import LOOPBACK, start_vm_spec
from vmhost.spec import Problem, SpecError
from vmhost_ex_start.spec import PLUGIN, ExStartBlock

WATCHDOG = "watchdog"
PINNING = "vcpuPinning"
ADDON_PINNING = "cpuPinning"

Command = Mapping[str, Any]
Document = dict[str, Any]


def extended_start_spec(cmd: Command, console_listen: str = LOOPBACK) -> Document:
    """The spec document for one extended start command; a SpecError lists every field that cannot be mapped."""
    if not isinstance(cmd, Mapping):
        raise SpecError([Problem("", f"an extended start command must be a JSON object, got {type(cmd).__name__}")])
    problems: list[Problem] = []
    try:
        document = start_vm_spec(cmd, console_listen)
    except SpecError as exc:
        problems.extend(exc.problems)
        document = {}
    block = _block(cmd, problems)
    pinning = _pinning(cmd, problems)
    if problems:
        raise SpecError(problems)
    if pinning:
        document["cpu"]["pinning"] = pinning
    if block:
        document["extensions"] = {PLUGIN: block}
    return document


def _block(cmd: Command, problems: list[Problem]) -> Document:
    """The extension's spec block, checked here so that errors carry the command's field names."""
    if cmd.get(WATCHDOG) is None:
        return {}
    try:
        block = ExStartBlock.model_validate({WATCHDOG: cmd[WATCHDOG]})
    except ValidationError as exc:
        problems.extend(Problem(".".join(map(str, error["loc"])), error["msg"]) for error in exc.errors())
        return {}
    return block.model_dump(exclude_none=True)


def _pinning(cmd: Command, problems: list[Problem]) -> list[Document]:
    rules = cmd.get(PINNING)
    if rules is None:
        return []
    addons = cmd.get("addons")
    if isinstance(addons, Mapping) and addons.get(ADDON_PINNING):
        problems.append(Problem(PINNING, f"give either {PINNING} or addons.{ADDON_PINNING}, not both"))
        return []
    if not isinstance(rules, list):
        problems.append(Problem(PINNING, f"must be a list of {{vCpu, pCpuSet}}, got {rules!r}"))
        return []
    pins = [_pin(rule, f"{PINNING}.{index}", problems) for index, rule in enumerate(rules)]
    return [pin for pin in pins if pin is not None]


def _pin(rule: object, path: str, problems: list[Problem]) -> Document | None:
    """{vCpu: 0, pCpuSet: "2-3"} → {vcpu, host_cpus}; the spec checks the CPU list itself."""
    if not isinstance(rule, Mapping):
        problems.append(Problem(path, f"must be an object {{vCpu, pCpuSet}}, got {rule!r}"))
        return None
    vcpu, cpus = rule.get("vCpu"), rule.get("pCpuSet")
    if isinstance(vcpu, bool) or not isinstance(vcpu, int):
        problems.append(Problem(f"{path}.vCpu", f"must be a vCPU index, got {vcpu!r}"))
        return None
    if not isinstance(cpus, str):
        problems.append(Problem(f"{path}.pCpuSet", f"must be a host CPU list such as '0-3,6', got {cpus!r}"))
        return None
    return {"vcpu": vcpu, "host_cpus": cpus}

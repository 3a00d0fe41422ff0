"""vCPUs: how many, the hotplug ceiling, host placement, and the <cpu> model, topology and NUMA cells."""

from typing import Literal

from lxml import etree

from vmhost.render.libvirt.nodes import element, kib, sub
from vmhost.spec import VMSpec
from vmhost.spec.checks import max_vcpus

HOST_MODES = ("host-model", "host-passthrough")


def vcpu_element(spec: VMSpec) -> etree._Element:
    """<vcpu> holds the ceiling; `current` is only written when hotplug leaves room above the boot count."""
    current = spec.cpu.vcpus if spec.cpu.max_vcpus else None
    return element("vcpu", max_vcpus(spec), placement="static", current=current)


def cputune_element(spec: VMSpec) -> etree._Element | None:
    """Relative weight and pinning; None when the VM asks for neither (libvirt rejects an empty <cputune>)."""
    if spec.cpu.shares is None and not spec.cpu.pinning and spec.cpu.emulator_pinning is None:
        return None
    cputune = element("cputune")
    if spec.cpu.shares is not None:
        sub(cputune, "shares", spec.cpu.shares)
    for pin in sorted(spec.cpu.pinning, key=lambda p: p.vcpu):
        sub(cputune, "vcpupin", vcpu=pin.vcpu, cpuset=pin.host_cpus)
    if spec.cpu.emulator_pinning is not None:
        sub(cputune, "emulatorpin", cpuset=spec.cpu.emulator_pinning)
    return cputune


def cpu_element(spec: VMSpec, accel: Literal["kvm", "tcg"]) -> etree._Element | None:
    """The guest CPU; None when there is nothing to say (mode left to the emulator, no topology, no NUMA)."""
    cpu = element("cpu")
    _model(cpu, spec.cpu.mode, accel)
    if spec.cpu.topology:
        topology = spec.cpu.topology
        sub(cpu, "topology", sockets=topology.sockets, cores=topology.cores, threads=topology.threads)
    for name, policy in sorted(spec.cpu.features.items()):
        sub(cpu, "feature", policy=policy, name=name)
    cells = numa_cells(spec)
    if cells:
        numa = sub(cpu, "numa")
        for index, (cpus, memory) in enumerate(cells):
            sub(numa, "cell", id=index, cpus=cpus, memory=kib(memory, f"numa.{index}.memory"), unit="KiB")
    return cpu if len(cpu) or cpu.attrib else None


def _model(cpu: etree._Element, mode: str, accel: Literal["kvm", "tcg"]) -> None:
    """'auto' means host-model where the host CPU is visible (kvm) and the emulator's own default under tcg;
    'default' is the emulator's own default everywhere (a bare <cpu>, as ZStack writes for nestedVirtualization
    none), which exposes no host flags and so migrates between unlike hosts."""
    if mode == "auto":
        if accel == "kvm":
            cpu.set("mode", "host-model")
    elif mode == "default":
        return
    elif mode in HOST_MODES:
        cpu.set("mode", mode)
    else:
        cpu.set("mode", "custom")
        cpu.set("match", "exact")
        sub(cpu, "model", mode, fallback="allow")


def numa_cells(spec: VMSpec) -> list[tuple[str, int]]:
    """(cpus, bytes) per guest NUMA cell; memory hotplug needs at least one, so then default to a single cell."""
    if spec.numa:
        return [(cell.cpus, cell.memory) for cell in spec.numa]
    if spec.memory.max_size is not None:
        last = max_vcpus(spec) - 1
        return [(f"0-{last}" if last else "0", spec.memory.size)]
    return []

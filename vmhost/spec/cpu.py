"""vCPU count, hotplug ceiling, topology, model and host placement."""

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel

CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpuset(value: str) -> set[int]:
    """Expand a cpuset string such as "0-3,6" into its members."""
    members: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        members.update(range(int(low), int(high or low) + 1))
    return members


def check_cpuset(value: str) -> str:
    if not CPUSET_RE.match(value):
        raise ValueError(f"must be a CPU list such as '0-3,6', got {value!r}")
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise ValueError(f"range {part!r} runs backwards")
    return value


class CpuTopology(SpecModel):
    """How vCPUs are presented to the guest."""

    sockets: int = Field(1, ge=1, le=256, description="CPU sockets.")
    cores: int = Field(1, ge=1, le=256, description="Cores per socket.")
    threads: int = Field(1, ge=1, le=8, description="Threads per core.")

    @property
    def total(self) -> int:
        return self.sockets * self.cores * self.threads


class VcpuPin(SpecModel):
    """Pins one guest vCPU to a set of host CPUs."""

    vcpu: int = Field(ge=0, description="Guest vCPU index.")
    host_cpus: str = Field(description="Host CPU list, e.g. '0-3,6'.")

    _check = field_validator("host_cpus")(check_cpuset)


CpuMode = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
        description=(
            "'auto' (host-model under kvm, the emulator default under tcg), 'default' (the emulator's default "
            "model under kvm too, e.g. qemu64: no host flags, so it migrates between unlike hosts), 'host-model', "
            "'host-passthrough', or a named CPU model such as 'Skylake-Server'."
        ),
    ),
]


CpuFeaturePolicy = Literal["force", "require", "optional", "disable", "forbid"]
UNNAMED_MODES = ("auto", "default")


class Cpu(SpecModel):
    """Virtual CPUs."""

    vcpus: int = Field(1, ge=1, le=1024, description="vCPUs online at boot.")
    max_vcpus: int | None = Field(None, ge=1, le=1024, description="Ceiling for vCPU hotplug.")
    topology: CpuTopology | None = Field(None, description="sockets*cores*threads must equal max_vcpus (or vcpus).")
    mode: CpuMode = "auto"
    shares: int | None = Field(None, ge=2, le=10000, description="Relative CPU weight (cgroup v2 range).")
    pinning: list[VcpuPin] = Field(default_factory=list, description="Pin vCPUs to host CPUs.")
    emulator_pinning: str | None = Field(None, description="Host CPU list for QEMU's own threads, e.g. '0-1'.")

    @field_validator("emulator_pinning")
    @classmethod
    def _emulator_cpus(cls, value: str | None) -> str | None:
        return None if value is None else check_cpuset(value)

    features: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")], CpuFeaturePolicy] = Field(
        default_factory=dict,
        description="CPU flags on top of the mode, e.g. {x2apic: disable}; needs a mode other than auto or default.",
    )

    @model_validator(mode="after")
    def _features_need_a_model(self) -> "Cpu":
        """libvirt refuses flags on a CPU whose model it does not know, and auto has none under tcg."""
        if self.features and self.mode in UNNAMED_MODES:
            raise ValueError(f"features need mode host-model, host-passthrough or a named model, not {self.mode}")
        return self

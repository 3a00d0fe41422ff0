"""Request and response bodies of the native API (they also make the OpenAPI document)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(False, description="Destroy at once instead of an ACPI shutdown.")
    timeout: float | None = Field(None, ge=0, le=3600, description="Seconds before a graceful stop is forced.")


class RebootOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(False, description="Hard reset instead of an ACPI reboot.")


class DiskDetach(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(pattern=r"^(vd|sd|hd)[a-z]{1,2}$", description="Guest device name of the disk.")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class OperationView(BaseModel):
    id: str
    kind: str
    vm: str | None
    state: str = Field(
        description="pending | running | succeeded | failed | completed by recovery | rolled back by recovery"
    )
    progress: str
    result: Any = None
    error: ErrorBody | None = None
    created_at: float
    started_at: float | None
    finished_at: float | None


def _no_required(schema: dict[str, Any]) -> None:
    schema.pop("required", None)


class VmSummary(BaseModel):
    """A row of GET /v1/vms: every field, or those `fields` names (so none is required)."""

    model_config = ConfigDict(json_schema_extra=_no_required)
    name: str
    uuid: str
    kind: str
    driver: str
    state: str
    vcpus: int
    memory: str
    accel: str
    disks: int
    nics: int
    description: str
    labels: dict[str, str]
    uptime_seconds: float | None = Field(None, description="With runtime=true, for running VMs.")
    addresses: list[str] = Field(default_factory=list, description="With runtime=true: the guest's addresses.")


class HostView(BaseModel):
    hostname: str
    agent_version: str
    hypervisor: str
    cpus: int
    memory_total: int
    memory_available: int
    accel: str
    drivers: list[str]
    capabilities: dict[str, list[str]] = Field(
        description="Driver -> what it can do beyond define/start/stop/delete (pause, reboot, console, ...)."
    )
    vms: int


class Health(BaseModel):
    status: str

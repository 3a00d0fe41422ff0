"""Guest NUMA cells."""

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.cpu import check_cpuset
from vmhost.spec.units import ByteSize, MiB


class NumaCell(SpecModel):
    """One guest NUMA node: its vCPUs and memory. Cells must cover every vCPU and all memory."""

    cpus: str = Field(description="Guest vCPUs in this cell, e.g. '0-1'.")
    memory: ByteSize = Field(description="Memory of this cell, a whole number of MiB.")

    _check = field_validator("cpus")(check_cpuset)

    @field_validator("memory")
    @classmethod
    def _whole_mebibytes(cls, value: int) -> int:
        if value < MiB or value % MiB:
            raise ValueError("must be a positive whole number of MiB")
        return value

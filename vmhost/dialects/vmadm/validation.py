"""The result of validating a payload, shaped and printed the way `vmadm validate` shapes and prints it, plus
vmhost's refusal of zone brands (which vmadm would run as zones)."""

import json
from dataclasses import dataclass, field
from typing import Any

from vmhost.spec.errors import Problem

KINDS = ("bad_values", "bad_properties", "missing_properties")
MESSAGES = {
    "bad_values": "vmadm does not accept this value",
    "bad_properties": "vmadm does not accept this property here",
    "missing_properties": "vmadm requires this property",
}
ZONE_MESSAGE = (
    "{brand!r} is a SmartOS zone brand: an OS container sharing the host's illumos kernel, which no vmhost driver "
    "runs; vmhost takes vmadm payloads of the bhyve and kvm brands (a container workload can be a vmhost "
    "`kind: container` spec)"
)


@dataclass
class VmadmValidation:
    """VM.validate's answer: `{bad_brand}` alone, or the three lists of property paths."""

    action: str
    brand: str | None
    bad_brand: str | None = None
    zone_brand: str | None = None
    """A zone brand's payload is checked like vmadm checks it (so its bad properties are named), then refused."""
    bad_values: list[str] = field(default_factory=list)
    bad_properties: list[str] = field(default_factory=list)
    missing_properties: list[str] = field(default_factory=list)

    def add(self, kind: str, path: str) -> None:
        """Each path once, in the order found (`nics.*.mtu` is reported once for any number of NICs)."""
        paths: list[str] = getattr(self, kind)
        if path not in paths:
            paths.append(path)

    @property
    def ok(self) -> bool:
        return self.bad_brand is None and self.zone_brand is None and not any(getattr(self, kind) for kind in KINDS)

    def as_vmadm(self) -> dict[str, Any]:
        if self.bad_brand is not None:
            return {"bad_brand": self.bad_brand}
        return {kind: list(getattr(self, kind)) for kind in KINDS}

    def report(self) -> str:
        """vmadm's words, both printed on stderr (vmadm.js prints main's callback message with console.error):
        the VALID line (exit 0) or the JSON object, 2-space indent (exit 1). A zone payload gets vmhost's refusal,
        after vmadm's object if vmadm itself would refuse it."""
        if self.ok:
            return f"VALID '{self.action}' payload for {self.brand} brand VMs."
        if self.zone_brand is None:
            return json.dumps(self.as_vmadm(), indent=2)
        lines = [json.dumps(self.as_vmadm(), indent=2)] if any(getattr(self, kind) for kind in KINDS) else []
        return "\n".join([*lines, f"brand: {ZONE_MESSAGE.format(brand=self.zone_brand)}"])

    def problems(self) -> list[Problem]:
        if self.bad_brand is not None:
            return [Problem("brand", f"vmadm runs no {self.bad_brand!r} brand VMs here; use bhyve or kvm")]
        found = [Problem(path, MESSAGES[kind]) for kind in KINDS for path in getattr(self, kind)]
        if self.zone_brand is not None:
            found.append(Problem("brand", ZONE_MESSAGE.format(brand=self.zone_brand)))
        return found

"""Labels become customer_metadata; vmhost's own record (spec and owner) goes to internal_metadata.

The guest can read both through the metadata service (internal_metadata read-only), so the recorded spec is the
masked one: the VNC password lives only in vnc_password and is put back when the record is read.
"""

import json
from collections.abc import Iterator
from typing import Any

from vmhost.formats.vmadm import OWNER_KEY, SPEC_KEY
from vmhost.spec import VMSpec

PASSWORD_SUFFIX = "_pw"
"""vmadm serves metadata keys ending in _pw from internal_metadata, so a label so named would vanish."""


def render_metadata(spec: VMSpec, owner: str) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if spec.labels:
        payload["customer_metadata"] = dict(sorted(spec.labels.items()))
    if owner:
        record = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        payload["internal_metadata"] = {OWNER_KEY: owner, SPEC_KEY: record}
    return payload


def metadata_problems(spec: VMSpec) -> Iterator[tuple[str, str]]:
    for key in spec.labels:
        if key.endswith(PASSWORD_SUFFIX):
            yield f"labels.{key}", f"vmadm reads metadata keys ending in {PASSWORD_SUFFIX} from internal_metadata"

"""Input dialects: documents in another tool's format, turned into vmhost spec documents.

The dialect layer sits beside the spec: it may use vmhost.spec, never the engine or the interfaces.
"""

from collections.abc import Callable
from typing import Any

from vmhost.dialects.vmadm import DialectError, payload_to_spec, validate_payload
from vmhost.dialects.vmadm.convert import ImageLookup
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.errors import Problem


def _identity(document: Any) -> Any:
    return document


DIALECTS: dict[str, Callable[[Any], Any]] = {"vmhost": _identity, "vmadm": payload_to_spec}


def to_spec_document(document: Any, dialect: str, images: ImageLookup | None = None) -> Any:
    """The vmhost spec document for `document` written in `dialect`; SpecError (DialectError) if it has none.
    `images` finds store images by UUID (vmadm's image_uuid)."""
    if dialect not in DIALECTS:
        raise SpecError([Problem("", f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")])
    if dialect == "vmadm" and images is not None:
        return payload_to_spec(document, images)
    return DIALECTS[dialect](document)


def validate_document(document: Any, dialect: str) -> tuple[bool, str]:
    """(valid, the report to print). For vmadm, vmadm's own words for what vmadm rejects (the VALID line, or
    its JSON object), and vmhost's `path: message` lines for what only vmhost cannot take."""
    try:
        spec_document = to_spec_document(document, dialect)
        parse_spec(spec_document)
    except DialectError as exc:
        if not exc.validation.ok:
            return False, exc.validation.report()
        return False, "\n".join(str(problem) for problem in exc.problems)
    except SpecError as exc:
        return False, "\n".join(str(problem) for problem in exc.problems)
    if dialect == "vmadm":
        return True, validate_payload(document).report()
    return True, "valid"

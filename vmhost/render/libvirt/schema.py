"""Check a rendered domain against libvirt's own RelaxNG schema, the one `virsh define --validate` uses."""

from functools import cache
from pathlib import Path

from lxml import etree

DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


class SchemaMissingError(RuntimeError):
    """libvirt's schemas are not installed (they ship with libvirt-daemon / libvirt-clients)."""


@cache
def _domain_schema() -> etree.RelaxNG:
    """Loaded once, on first use: importing the renderer must not need libvirt installed."""
    if not DOMAIN_RNG.is_file():
        raise SchemaMissingError(f"libvirt's domain schema {DOMAIN_RNG} is missing; install libvirt-daemon")
    return etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))


def validate_domain_xml(domain: etree._Element) -> list[str]:
    """Every schema error as 'line N (path): message', lines counted in the pretty-printed document.

    An empty list means libvirt's schema accepts the document.
    """
    schema = _domain_schema()
    document = etree.fromstring(etree.tostring(domain, pretty_print=True))
    if schema.validate(document):
        return []
    return [f"line {error.line} ({error.path}): {error.message}" for error in schema.error_log]

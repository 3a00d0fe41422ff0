"""libvirt secrets holding Ceph (cephx) keys that a command carries, e.g. ZStack's addons.ceph_secret_key.

The key is set into the secret and never kept, logged or returned: the secret is private (libvirt will not hand
its value out) and the value never appears in an error. vmhost marks the secrets it makes (their description),
and removes one when no domain refers to it any more and no start that uses it is under way; a secret vmhost
did not make is updated but never removed. Secrets are persistent, so a VM that vmhost restarts on its own
(restart policy, recovery after a libvirtd restart) still finds its key without the management node resending it.
"""

import base64
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from uuid import UUID

import libvirt
from lxml import etree

from vmhost.drivers.libvirt.errors import translate
from vmhost.errors import VmhostError

MARK = "vmhost: a Ceph key set from a management plane command"
USAGE_PREFIX = "vmhost-ceph-"
DOMAIN_SECRETS = ".//devices/disk//secret[@uuid]"

T = TypeVar("T")
log = logging.getLogger("vmhost.secrets")


class BadSecret(VmhostError):
    """The command's key is not a cephx key; the message never contains the value."""

    code = "invalid_secret"


class CephSecrets:
    """The Ceph secrets of one libvirt host; `conn` returns the calling thread's connection."""

    def __init__(self, conn: Callable[[], libvirt.virConnect]):
        self._conn = conn
        self._lock = threading.Lock()
        self._pending: Counter[UUID] = Counter()

    @contextmanager
    def held(self, uuid: UUID, key: str) -> Iterator[None]:
        """Secret `uuid` holds `key` for the block (which defines and starts a VM using it) and is not removed
        meanwhile; when the block fails, a secret vmhost made that no domain refers to is removed again."""
        value = _decoded(key)
        with self._lock:
            self._set(uuid, value)
            self._pending[uuid] += 1
        try:
            yield
        except BaseException:
            self._done(uuid)
            self.release(uuid)
            raise
        self._done(uuid)

    def _done(self, uuid: UUID) -> None:
        with self._lock:
            self._pending[uuid] -= 1
            if not self._pending[uuid]:
                del self._pending[uuid]

    def _set(self, uuid: UUID, value: bytes) -> None:
        conn = self._conn()
        secret = self._lookup(conn, uuid)
        if secret is None:
            xml = _secret_xml(uuid)
            made = _call(uuid, "define", lambda: conn.secretDefineXML(xml, 0))
            try:
                _call(uuid, "set the value of", lambda: made.setValue(value, 0))
            except VmhostError:
                made.undefine()  # no secret without its value is left behind
                raise
            return
        _call(uuid, "set the value of", lambda: secret.setValue(value, 0))

    def release(self, uuid: UUID) -> None:
        """Remove secret `uuid` if vmhost made it, no defined domain refers to it and no start holds it. Best
        effort: it runs after a domain is gone or a start failed, and must not turn either into another error."""
        with self._lock:
            if self._pending[uuid]:
                return
            try:
                self._remove_unused(uuid)
            except (VmhostError, libvirt.libvirtError) as exc:
                log.warning("could not remove the unused Ceph secret %s: %s", uuid, exc)

    def _remove_unused(self, uuid: UUID) -> None:
        conn = self._conn()
        secret = self._lookup(conn, uuid)
        if secret is None or not _made_by_vmhost(secret) or uuid in domain_secrets(conn):
            return
        _call(uuid, "remove", secret.undefine)

    @staticmethod
    def _lookup(conn: libvirt.virConnect, uuid: UUID) -> libvirt.virSecret | None:
        try:
            return conn.secretLookupByUUIDString(str(uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
                return None
            raise translate(exc, f"secret {uuid}", "look up") from None


def domain_secrets(conn: libvirt.virConnect) -> set[UUID]:
    """The secrets the disks and CD-ROMs of every defined domain (of any owner) refer to."""
    used: set[UUID] = set()
    for dom in conn.listAllDomains(0):
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        except libvirt.libvirtError:
            continue  # undefined meanwhile
        used.update(referenced(etree.fromstring(xml)))
    return used


def referenced(domain: etree._Element) -> set[UUID]:
    """The secret UUIDs a domain document's disks refer to."""
    return {UUID(node.get("uuid")) for node in domain.iterfind(DOMAIN_SECRETS)}


def _decoded(key: str) -> bytes:
    """A cephx key is base64 (as `ceph auth get-key` prints it); libvirt stores the decoded bytes."""
    try:
        value = base64.b64decode(key, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        value = b""
    if not value:
        raise BadSecret("the Ceph key is not a base64 cephx key (its value is not shown)")
    return value


def _secret_xml(uuid: UUID) -> str:
    secret = etree.Element("secret", ephemeral="no", private="yes")
    etree.SubElement(secret, "description").text = MARK
    etree.SubElement(secret, "uuid").text = str(uuid)
    usage = etree.SubElement(secret, "usage", type="ceph")
    etree.SubElement(usage, "name").text = f"{USAGE_PREFIX}{uuid}"
    return etree.tostring(secret, encoding="unicode")


def _made_by_vmhost(secret: libvirt.virSecret) -> bool:
    description = etree.fromstring(secret.XMLDesc(0)).findtext("description")
    return description == MARK


def _call(uuid: UUID, action: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise translate(exc, f"secret {uuid}", action) from None

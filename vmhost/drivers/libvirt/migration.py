"""Live migration on libvirt: peer to peer, so the source's libvirtd drives the whole migration itself
(migrateToURI3) and this process only waits, watches and may abort.

- The destination arrives PAUSED and persistent with the destination's own definition (DEST_XML and
  PERSIST_XML: its paths, its owner); its agent resumes it after plugins' start-paused hooks. The source stays
  defined and shut off: never UNDEFINE_SOURCE, the engine undefines once the destination has finished.
- libvirt refuses POSTCOPY together with PAUSED (qemuMigrationSrcBeginPhase: "post-copy migration is not
  supported with non-live or paused migration"), and post-copy means the guest runs at the destination before
  the migration ends anyway. So a post-copy migration goes without PAUSED: the guest arrives running, the
  destination's resume finds nothing to do, and its start-paused hooks run on a running guest.
- Post-copy starts once a full pre-copy pass did not converge (QEMU's dirty-sync count reaches 2); once it has
  started the migration can no longer be rolled back: a failure then leaves the source paused
  (postcopy-failed) and the destination running, and abortJob is refused.
- libvirt's error for an abort depends on the phase (disk mirror, memory), so an abort this driver asked for is
  remembered and the failure says "aborted" whatever libvirt's words were.

The flags and params are pure functions of the target and the options, so they are tested without libvirt.
"""

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import libvirt

from vmhost.drivers.base import MigrationOptions, MigrationProgress, MigrationTarget
from vmhost.drivers.libvirt.errors import translate
from vmhost.errors import Conflict, HypervisorError, VmhostError

WATCH_INTERVAL = 0.5
"""How often a running migration is looked at (post-copy switch, an abort asked before the job existed)."""
POST_COPY_AFTER_ITERATION = 2
"""QEMU counts its memory passes from 1 (the first sync at setup): 2 means one full pass ended unconverged."""
NO_JOB = (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN)
"""A domain with no job to abort or query: "no job is active", "domain is not running", or gone meanwhile."""


def migration_flags(target: MigrationTarget, options: MigrationOptions) -> int:
    """libvirt's VIR_MIGRATE_* flags for this migration."""
    flags: int = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
    )
    flags |= libvirt.VIR_MIGRATE_POSTCOPY if options.post_copy else libvirt.VIR_MIGRATE_PAUSED
    if target.tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if options.copy_disks:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    if options.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    return flags


def migration_params(target: MigrationTarget, options: MigrationOptions) -> dict[str, Any]:
    """migrateToURI3's typed parameters: the destination's definition (live and persistent), where the streams
    go, the bandwidth ceiling (for post-copy too) and which disks are copied."""
    params: dict[str, Any] = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: target.definition,
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: target.definition,
    }
    if target.stream_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = target.stream_uri
    if options.bandwidth_mib is not None:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth_mib
        if options.post_copy:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = options.bandwidth_mib
    if options.copy_disks:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(options.copy_disks)
    return params


def progress(
    stats: Mapping[str, Any], state: int, reason: int, copying_disks: bool = False
) -> MigrationProgress | None:
    """jobStats() of the source domain, and its (state, reason), as a MigrationProgress; None unless an outgoing
    migration runs. data_* counts memory and disks together. A disk copy runs before the memory moves, and before
    it the job counts nothing for a while (the destination starts its QEMU and disk server): that setup belongs
    to the phase that comes next."""
    if incoming(stats, state, reason):
        return MigrationProgress("incoming", 0, 0, 0)
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_UNBOUNDED:
        return None
    if stats.get(libvirt.VIR_DOMAIN_JOB_OPERATION) not in (None, libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT):
        return None
    memory_processed = int(stats.get(libvirt.VIR_DOMAIN_JOB_MEMORY_PROCESSED, 0))
    paused = state == libvirt.VIR_DOMAIN_PAUSED
    if paused and reason in (libvirt.VIR_DOMAIN_PAUSED_POSTCOPY, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED):
        phase = "post-copy"
    elif paused and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
        phase = "completing"
    elif memory_processed == 0 and (copying_disks or int(stats.get(libvirt.VIR_DOMAIN_JOB_DISK_REMAINING, 0)) > 0):
        phase = "disks"
    else:
        phase = "memory"
    downtime = stats.get(libvirt.VIR_DOMAIN_JOB_DOWNTIME)
    return MigrationProgress(
        phase=phase,
        processed_bytes=int(stats.get(libvirt.VIR_DOMAIN_JOB_DATA_PROCESSED, 0)),
        remaining_bytes=int(stats.get(libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, 0)),
        total_bytes=int(stats.get(libvirt.VIR_DOMAIN_JOB_DATA_TOTAL, 0)),
        expected_downtime_ms=int(downtime) if downtime is not None else None,
    )


def incoming(stats: Mapping[str, Any], state: int, reason: int) -> bool:
    """The destination's domain while it is still coming: an incoming migration job, or (where libvirt reports
    no job there) paused for the migration. Once arrived it is paused by the PAUSED flag (reason user) or runs,
    so the destination agent tells "still coming" from "arrived" by this."""
    if stats.get(libvirt.VIR_DOMAIN_JOB_OPERATION) == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN:
        return True
    no_job = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE
    return bool(no_job and state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION)


def should_start_post_copy(stats: Mapping[str, Any]) -> bool:
    """A running migration whose first full memory pass ended without converging (else it would have ended)."""
    return (
        stats.get("type") == libvirt.VIR_DOMAIN_JOB_UNBOUNDED
        and int(stats.get(libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION, 0)) >= POST_COPY_AFTER_ITERATION
    )


class _Outgoing:
    """One running migration: its options, and its abort request: asked (by abort()), sent (abortJob reached a
    job)."""

    def __init__(self, options: MigrationOptions) -> None:
        self.options = options
        self.asked = threading.Event()
        self.sent = threading.Event()


class Migrations:
    """The outgoing migrations of one driver: which run, and which of them were asked to abort.

    migrate() blocks in the caller's thread while its watcher looks at the job every WATCH_INTERVAL on the same
    connection (a libvirt connection serves calls from several threads at once); abort() and current() come
    from other threads, on their own connections, and find the job through libvirtd.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, _Outgoing] = {}

    def migrate(self, dom: libvirt.virDomain, target: MigrationTarget, options: MigrationOptions) -> None:
        name = dom.name()
        outgoing = _Outgoing(options)
        with self._lock:
            if name in self._running:
                raise Conflict(f"a migration of {name} is already running")
            self._running[name] = outgoing
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(dom, options, outgoing, done), name=f"migrate-{name}", daemon=True
        )
        watcher.start()
        try:
            dom.migrateToURI3(
                target.hypervisor_uri, migration_params(target, options), migration_flags(target, options)
            )
        except libvirt.libvirtError as exc:
            raise failure(exc, name, target, outgoing.asked.is_set()) from None
        finally:
            done.set()
            watcher.join()
            with self._lock:
                del self._running[name]

    def current(self, dom: libvirt.virDomain) -> MigrationProgress | None:
        with self._lock:
            outgoing = self._running.get(dom.name())
        try:
            stats = dom.jobStats()
            state, reason = dom.state()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NO_JOB:  # gone, or shut off (migrated away): no job
                return None
            raise translate(exc, dom.name(), "query the migration of") from None
        return progress(stats, state, reason, copying_disks=outgoing is not None and bool(outgoing.options.copy_disks))

    def abort(self, dom: libvirt.virDomain) -> None:
        """Abort the job; a migration of this driver that has no job yet is aborted by its watcher once it has."""
        with self._lock:
            outgoing = self._running.get(dom.name())
        if outgoing is not None:
            outgoing.asked.set()
        if _abort_job(dom) and outgoing is not None:
            outgoing.sent.set()


def _watch(dom: libvirt.virDomain, options: MigrationOptions, outgoing: _Outgoing, done: threading.Event) -> None:
    """Abort a job that began after abort() found none; start post-copy when pre-copy did not converge."""
    post_copy_started = False
    while not done.wait(WATCH_INTERVAL):
        with contextlib.suppress(libvirt.libvirtError, VmhostError):
            if outgoing.asked.is_set():
                if not outgoing.sent.is_set() and _abort_job(dom):
                    outgoing.sent.set()
            elif options.post_copy and not post_copy_started and should_start_post_copy(dom.jobStats()):
                dom.migrateStartPostCopy(0)
                post_copy_started = True


def _abort_job(dom: libvirt.virDomain) -> bool:
    """True when a job was aborted; False when none ran. A migration in post-copy cannot be aborted: neither host
    holds the whole guest any more."""
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        if _in_post_copy(dom):
            raise HypervisorError(
                f"the migration of {dom.name()} is in post-copy (the guest already runs at the destination) "
                "and can no longer be aborted",
                exc.get_error_message(),
            ) from None
        if exc.get_error_code() in NO_JOB:
            return False
        raise translate(exc, dom.name(), "abort the migration of") from None
    return True


def _in_post_copy(dom: libvirt.virDomain) -> bool:
    try:
        state, reason = dom.state()
    except libvirt.libvirtError:
        return False
    return bool(state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)


def failure(exc: libvirt.libvirtError, name: str, target: MigrationTarget, aborted: bool) -> HypervisorError:
    """The operator's message for a failed migrateToURI3, libvirt's own words as detail."""
    detail = exc.get_error_message() or str(exc)
    if aborted or exc.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
        return HypervisorError(f"the migration of {name} was aborted; it still runs on this host", detail)
    return HypervisorError(f"the migration of {name} to {target.hypervisor_uri} failed", detail)

"""The libvirt driver's side of live migration as a specification: which flags and parameters migrateToURI3
gets for each option, how a job's statistics read as progress, when post-copy starts, how an abort is told
apart from a failure, which events a migration produces, and that the other drivers refuse it."""

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from vmhost.drivers.base import (
    Capability,
    DomainEvent,
    DomainEventKind,
    MigrationOptions,
    MigrationProgress,
    MigrationTarget,
    Resources,
)
from vmhost.drivers.libvirt import LibvirtDriver, migration
from vmhost.drivers.libvirt.events import translate
from vmhost.drivers.libvirt.migration import (
    Migrations,
    migration_flags,
    migration_params,
    progress,
    should_start_post_copy,
)
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.xen import XlDriver
from vmhost.errors import Conflict, HypervisorError, Unsupported
from vmhost.render.libvirt import RenderHook
from vmhost.spec import parse_spec
from vmhost.spec.units import MiB

TARGET = MigrationTarget(
    hypervisor_uri="qemu+tls://192.0.2.2/system", stream_uri="tcp://192.0.2.2", definition="<domain>dest</domain>"
)
ALWAYS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
)


def has(flags: int, flag: int) -> bool:
    return flags & flag == flag


# ---- flags and parameters ---------------------------------------------------------------------------------


def test_a_live_migration_is_peer_to_peer_persistent_arrives_paused_and_encrypted_by_default():
    assert migration_flags(TARGET, MigrationOptions()) == ALWAYS | libvirt.VIR_MIGRATE_PAUSED | libvirt.VIR_MIGRATE_TLS


def test_the_source_is_never_undefined_by_libvirt_whatever_the_options():
    every = MigrationOptions(copy_disks=("vda",), bandwidth_mib=10, auto_converge=True, post_copy=True)
    for options in (MigrationOptions(), every):
        assert not has(migration_flags(TARGET, options), libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def test_a_test_bed_target_without_tls_gets_plain_streams():
    plain = MigrationTarget(TARGET.hypervisor_uri, TARGET.stream_uri, TARGET.definition, tls=False)
    assert not has(migration_flags(plain, MigrationOptions()), libvirt.VIR_MIGRATE_TLS)


def test_copied_disks_are_a_full_non_shared_copy_of_exactly_the_named_targets():
    options = MigrationOptions(copy_disks=("vda", "vdb"))
    flags = migration_flags(TARGET, options)
    assert has(flags, libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    assert not has(flags, libvirt.VIR_MIGRATE_NON_SHARED_INC)
    assert migration_params(TARGET, options)[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda", "vdb"]
    assert not has(migration_flags(TARGET, MigrationOptions()), libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    assert libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS not in migration_params(TARGET, MigrationOptions())


def test_auto_converge_is_asked_of_libvirt_only_when_the_options_say_so():
    assert has(migration_flags(TARGET, MigrationOptions(auto_converge=True)), libvirt.VIR_MIGRATE_AUTO_CONVERGE)
    assert not has(migration_flags(TARGET, MigrationOptions()), libvirt.VIR_MIGRATE_AUTO_CONVERGE)


def test_post_copy_goes_without_paused_which_libvirt_refuses_with_it():
    flags = migration_flags(TARGET, MigrationOptions(post_copy=True))
    assert has(flags, libvirt.VIR_MIGRATE_POSTCOPY)
    assert not has(flags, libvirt.VIR_MIGRATE_PAUSED)
    assert flags == ALWAYS | libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_TLS


def test_the_destination_defines_its_own_xml_live_and_persistent_and_streams_go_to_its_address():
    assert migration_params(TARGET, MigrationOptions()) == {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain>dest</domain>",
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: "<domain>dest</domain>",
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://192.0.2.2",
    }


def test_without_a_stream_uri_libvirt_picks_the_destination_s_own_address():
    target = MigrationTarget(TARGET.hypervisor_uri, "", TARGET.definition)
    assert libvirt.VIR_MIGRATE_PARAM_URI not in migration_params(target, MigrationOptions())


def test_the_bandwidth_ceiling_is_in_mib_per_second_and_covers_post_copy_too():
    precopy = migration_params(TARGET, MigrationOptions(bandwidth_mib=5))
    assert precopy[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 5
    assert libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY not in precopy
    postcopy = migration_params(TARGET, MigrationOptions(bandwidth_mib=5, post_copy=True))
    assert postcopy[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] == 5
    assert libvirt.VIR_MIGRATE_PARAM_BANDWIDTH not in migration_params(TARGET, MigrationOptions())


# ---- progress ---------------------------------------------------------------------------------------------

RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED)


def job(**values: int) -> dict[str, int]:
    """jobStats() of an outgoing migration, with libvirt's key names."""
    stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}
    return stats | {key.replace("__", "."): value for key, value in values.items()}


def test_no_job_or_another_kind_of_job_is_no_migration_progress():
    assert progress({"type": libvirt.VIR_DOMAIN_JOB_NONE}, *RUNNING) is None
    assert progress(job() | {"operation": libvirt.VIR_DOMAIN_JOB_OPERATION_SNAPSHOT}, *RUNNING) is None


def test_a_destination_domain_still_coming_in_is_an_incoming_job_until_it_has_arrived():
    """The destination agent tells "still coming" (refuse to finish, may abort) from "arrived" by this."""
    incoming = job() | {"operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN}
    assert progress(incoming, *RUNNING).phase == "incoming"  # type: ignore[union-attr]
    waiting = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
    assert progress({"type": libvirt.VIR_DOMAIN_JOB_NONE}, *waiting).phase == "incoming"  # type: ignore[union-attr]
    arrived = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER)
    assert progress({"type": libvirt.VIR_DOMAIN_JOB_NONE}, *arrived) is None


def test_memory_progress_counts_every_byte_of_the_job_and_the_expected_downtime():
    stats = job(
        data_processed=40 * MiB,
        data_remaining=60 * MiB,
        data_total=100 * MiB,
        memory_processed=40 * MiB,
        downtime=30,
    )
    moving = progress(stats, *RUNNING)
    assert moving == MigrationProgress("memory", 40 * MiB, 60 * MiB, 100 * MiB, expected_downtime_ms=30)
    assert moving is not None and moving.percent == 40.0


def test_a_disk_copy_is_its_own_phase_until_the_memory_starts_moving():
    copying = progress(job(data_total=1024 * MiB, disk_remaining=900 * MiB, memory_processed=0), *RUNNING)
    assert copying is not None and copying.phase == "disks"
    assert copying.expected_downtime_ms is None
    memory = progress(job(disk_remaining=10 * MiB, memory_processed=MiB), *RUNNING)
    assert memory is not None and memory.phase == "memory"


def test_the_setup_before_anything_is_counted_belongs_to_the_phase_that_comes_next():
    setup = job(data_total=0, memory_processed=0)
    assert progress(setup, *RUNNING) == MigrationProgress("memory", 0, 0, 0)
    assert progress(setup, *RUNNING, copying_disks=True) == MigrationProgress("disks", 0, 0, 0)


def test_a_source_paused_for_the_switchover_is_completing_and_one_paused_for_post_copy_is_post_copy():
    paused = libvirt.VIR_DOMAIN_PAUSED
    completing = progress(job(memory_processed=MiB), paused, libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
    assert completing is not None and completing.phase == "completing"
    post_copy = progress(job(memory_processed=MiB), paused, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)
    assert post_copy is not None and post_copy.phase == "post-copy"


def test_post_copy_starts_once_a_full_memory_pass_ended_without_converging():
    assert not should_start_post_copy(job(memory_iteration=1))
    assert should_start_post_copy(job(memory_iteration=2))
    assert not should_start_post_copy({"type": libvirt.VIR_DOMAIN_JOB_NONE})


# ---- events -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "detail", "kind"),
    [
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED, DomainEventKind.STOPPED),
        (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED, DomainEventKind.STARTED),
        (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED, DomainEventKind.RESUMED),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, DomainEventKind.PAUSED),
    ],
)
def test_a_migration_s_events_say_migrated(event: int, detail: int, kind: DomainEventKind):
    assert translate("web", event, detail) == DomainEvent("web", kind, "migrated")


def test_the_other_events_keep_their_reasons():
    assert translate("web", libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED) == (
        DomainEvent("web", DomainEventKind.STOPPED, "destroyed")
    )
    assert translate("web", libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED) == (
        DomainEvent("web", DomainEventKind.STOPPED, "stopped")
    )
    assert translate("web", libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED) == (
        DomainEvent("web", DomainEventKind.STARTED, "started")
    )
    assert translate("web", libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED) == (
        DomainEvent("web", DomainEventKind.PAUSED, "paused")
    )
    assert translate("web", libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED) == (
        DomainEvent("web", DomainEventKind.RESUMED, "resumed")
    )


# ---- the migration as it runs: abort, post-copy, failures (a stand-in domain) -----------------------------


def libvirt_error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, 0, 0)
    return exc


class MigratingDomain:
    """A source domain whose job starts `job_after` s into migrateToURI3 and ends when it is aborted, or when
    post-copy starts or after `runs_for` s, with `outcome` (None: success)."""

    def __init__(self, job_after: float = 0.0, runs_for: float = 5.0, outcome: Exception | None = None):
        self.job_after, self.runs_for, self.outcome = job_after, runs_for, outcome
        self.job = threading.Event()
        self.aborted = threading.Event()
        self.post_copy = threading.Event()
        self.iteration = 1
        self.calls: list[tuple[str, dict[str, Any], int]] = []
        self.abort_calls = 0

    def name(self) -> str:
        return "web"

    def migrateToURI3(self, uri: str, params: dict[str, Any], flags: int) -> int:
        self.calls.append((uri, params, flags))
        if self.aborted.wait(self.job_after):
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_ABORTED, "operation aborted: job 'migration out' canceled")
        self.job.set()
        try:
            deadline = time.monotonic() + self.runs_for
            while time.monotonic() < deadline and not self.post_copy.is_set():
                if self.aborted.wait(0.01):
                    raise libvirt_error(
                        libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: migration out job: canceled"
                    )
            if self.post_copy.is_set():
                time.sleep(0.5)  # the rest of the pages follow while the guest runs at the destination
        finally:
            self.job.clear()
        if self.outcome is not None:
            raise self.outcome
        return 0

    def jobStats(self) -> dict[str, int]:
        return job(memory_iteration=self.iteration) if self.job.is_set() else {"type": libvirt.VIR_DOMAIN_JOB_NONE}

    def state(self) -> tuple[int, int]:
        if self.post_copy.is_set():
            return libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY
        return RUNNING

    def abortJob(self) -> int:
        self.abort_calls += 1
        if self.post_copy.is_set():
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID, "cannot abort migration in post-copy mode")
        if not self.job.is_set():
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID, "no job is active on the domain")
        self.aborted.set()
        return 0

    def migrateStartPostCopy(self, flags: int = 0) -> int:
        self.post_copy.set()
        return 0


def in_thread(call: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


@pytest.fixture(autouse=True)
def _quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration, "WATCH_INTERVAL", 0.02)


def test_migrate_hands_libvirt_the_built_flags_and_params():
    dom, options = MigratingDomain(runs_for=0), MigrationOptions(copy_disks=("vda",), bandwidth_mib=8)
    Migrations().migrate(dom, TARGET, options)
    assert dom.calls == [
        (TARGET.hypervisor_uri, migration_params(TARGET, options), migration_flags(TARGET, options)),
    ]


def test_an_abort_from_another_thread_ends_the_migration_with_an_error_that_says_aborted():
    migrations, dom = Migrations(), MigratingDomain()
    thread, raised = in_thread(lambda: migrations.migrate(dom, TARGET, MigrationOptions()))
    assert dom.job.wait(5)
    migrations.abort(dom)
    thread.join(5)
    assert isinstance(raised[0], HypervisorError)
    assert raised[0].message == "the migration of web was aborted; it still runs on this host"
    assert raised[0].detail == "operation failed: migration out job: canceled"


def test_an_abort_asked_before_libvirt_started_the_job_is_carried_out_once_the_job_exists():
    migrations, dom = Migrations(), MigratingDomain(job_after=0.3)
    thread, raised = in_thread(lambda: migrations.migrate(dom, TARGET, MigrationOptions()))
    eventually(lambda: dom.calls)
    migrations.abort(dom)  # no job yet: nothing to abort right now
    thread.join(5)
    assert isinstance(raised[0], HypervisorError) and "was aborted" in raised[0].message
    assert dom.aborted.is_set()


def test_aborting_a_domain_that_is_not_migrating_does_nothing():
    dom = MigratingDomain()
    Migrations().abort(dom)
    assert dom.abort_calls == 1 and not dom.aborted.is_set()


def test_a_failure_that_nobody_asked_for_names_the_destination_and_keeps_libvirt_s_words():
    refused = libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED, "unable to connect to server at '192.0.2.2:16514'")
    dom = MigratingDomain(runs_for=0, outcome=refused)
    with pytest.raises(HypervisorError) as failed:
        Migrations().migrate(dom, TARGET, MigrationOptions())
    assert failed.value.message == "the migration of web to qemu+tls://192.0.2.2/system failed"
    assert failed.value.detail == "unable to connect to server at '192.0.2.2:16514'"


def test_an_abort_libvirt_reports_for_someone_else_also_says_aborted():
    aborted = libvirt_error(libvirt.VIR_ERR_OPERATION_ABORTED, "operation aborted: migration out: canceled by client")
    with pytest.raises(HypervisorError, match="was aborted"):
        Migrations().migrate(MigratingDomain(runs_for=0, outcome=aborted), TARGET, MigrationOptions())


def test_a_second_migration_of_the_same_domain_is_refused_while_the_first_runs():
    migrations, dom = Migrations(), MigratingDomain()
    thread, _raised = in_thread(lambda: migrations.migrate(dom, TARGET, MigrationOptions()))
    assert dom.job.wait(5)
    with pytest.raises(Conflict, match="a migration of web is already running"):
        migrations.migrate(dom, TARGET, MigrationOptions())
    migrations.abort(dom)
    thread.join(5)


def test_post_copy_is_started_after_an_unconverged_pass_and_then_cannot_be_aborted():
    migrations, dom = Migrations(), MigratingDomain(runs_for=30)
    thread, raised = in_thread(lambda: migrations.migrate(dom, TARGET, MigrationOptions(post_copy=True)))
    assert dom.job.wait(5)
    assert not dom.post_copy.wait(0.2)  # the first pass still runs
    dom.iteration = 2
    assert dom.post_copy.wait(5)
    with pytest.raises(HypervisorError, match=r"in post-copy .* can no longer be aborted"):
        migrations.abort(dom)
    thread.join(5)
    assert not thread.is_alive() and raised == []


def test_without_post_copy_an_unconverged_migration_is_left_to_pre_copy():
    migrations, dom = Migrations(), MigratingDomain(runs_for=0.3)
    dom.iteration = 5
    migrations.migrate(dom, TARGET, MigrationOptions())
    assert not dom.post_copy.is_set()


# ---- the destination's definition and the other drivers ----------------------------------------------------


class DefiningConnection:
    def __init__(self) -> None:
        self.defined: list[str] = []

    def isAlive(self) -> bool:
        return True

    def defineXMLFlags(self, xml: str, flags: int) -> None:
        self.defined.append(xml)


def test_the_incoming_definition_is_what_define_would_define_plugins_hooks_included(tmp_path: Path):
    def watchdog(_spec: object, domain: etree._Element) -> None:
        etree.SubElement(domain.find("devices"), "watchdog", model="i6300esb", action="reset")

    driver = LibvirtDriver("qemu:///system", "tcg", render_hooks=(RenderHook("ex", watchdog),))
    conn = DefiningConnection()
    driver._local.conn = conn
    spec = parse_spec({"name": "web", "memory": "64MiB", "disks": [{"source": {"type": "new", "size": "1GiB"}}]})
    resources = Resources(console_log=tmp_path / "web.log", disk_paths={"vda": tmp_path / "vda.qcow2"}, owner="b")
    incoming = driver.incoming_definition(spec, resources)
    driver.define(spec, resources)
    assert conn.defined == [incoming]
    assert "<watchdog" in incoming and str(tmp_path / "vda.qcow2") in incoming


def test_libvirt_declares_live_and_offline_migration():
    assert {Capability.LIVE_MIGRATION, Capability.OFFLINE_MIGRATION} <= LibvirtDriver.capabilities


@pytest.mark.parametrize("kind", ["runc", "xen", "smartos"])
def test_the_other_drivers_refuse_every_migration_call_with_a_reason(tmp_path: Path, kind: str):
    driver = {
        "runc": lambda: RuncDriver("runc", tmp_path / "runc"),
        "xen": lambda: XlDriver("xl", tmp_path / "xen", sysfs=tmp_path, xl_conf=tmp_path / "xl.conf"),
        "smartos": lambda: VmadmDriver("vmadm"),
    }[kind]()
    spec, resources = parse_spec({"name": "web", "memory": "64MiB"}), Resources(console_log=tmp_path / "c.log")
    calls: list[Callable[[], object]] = [
        lambda: driver.migrate("web", TARGET, MigrationOptions()),
        lambda: driver.migration_progress("web"),
        lambda: driver.abort_migration("web"),
        lambda: driver.incoming_definition(spec, resources),
    ]
    for call in calls:
        with pytest.raises(Unsupported) as refused:
            call()
        assert (refused.value.driver, refused.value.capability) == (kind, "live-migration")
        assert refused.value.detail and "\n" not in refused.value.detail
    assert Capability.LIVE_MIGRATION not in driver.capabilities
    assert Capability.OFFLINE_MIGRATION not in driver.capabilities

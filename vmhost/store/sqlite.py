"""SQLite store for VM records and operation history; safe across threads and processes."""

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmhost.errors import Conflict

SCHEMA = """
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    owned_paths TEXT NOT NULL DEFAULT '[]',
    desired_state TEXT NOT NULL DEFAULT 'stopped',
    restart_count INTEGER NOT NULL DEFAULT 0,
    last_exit_reason TEXT NOT NULL DEFAULT '',
    next_retry_at REAL,
    started_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_name TEXT NOT NULL,
    vm_uuid TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    result TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS operations_vm ON operations(vm_name, id);
CREATE TABLE IF NOT EXISTS snapshots (
    vm_uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    disk_only INTEGER NOT NULL,
    vm_state TEXT NOT NULL,
    layers TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    spec_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (vm_uuid, name)
);
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    virtual_size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    imported_at REAL NOT NULL
);
"""
DECODE_BATCH = 500
"""Changed VM rows fetched per query (under SQLite's limit of bound parameters)."""
# Tables added after the first release (snapshots, images) are created on open by SCHEMA's IF NOT EXISTS.
# Columns added after the first release, with their definitions: added to older databases on open.
ADDED_COLUMNS = {
    "vms": {
        "desired_state": "TEXT NOT NULL DEFAULT 'stopped'",
        "restart_count": "INTEGER NOT NULL DEFAULT 0",
        "last_exit_reason": "TEXT NOT NULL DEFAULT ''",
        "next_retry_at": "REAL",
        "started_at": "REAL",
        "since_boot": "TEXT NOT NULL DEFAULT '{}'",
        "migration": "TEXT NOT NULL DEFAULT '{}'",
    },
    "operations": {
        "steps": "TEXT NOT NULL DEFAULT '[]'",
        "data": "TEXT NOT NULL DEFAULT '{}'",
        "request": "TEXT",
    },
    "snapshots": {"spec_digest": "TEXT NOT NULL DEFAULT ''"},
}


@dataclass(frozen=True)
class VmRecord:
    name: str
    uuid: str
    driver: str
    spec: dict[str, Any]
    state: str
    reason: str
    owned_paths: list[str]
    created_at: float
    updated_at: float
    desired_state: str = "stopped"
    restart_count: int = 0
    last_exit_reason: str = ""
    next_retry_at: float | None = None
    started_at: float | None = None
    since_boot: dict[str, Any] = field(default_factory=dict)
    """Path -> {booted, pending} of each change made to the running VM since it booted (engine/plan.py)."""
    migration: dict[str, Any] = field(default_factory=dict)
    """The migration in flight into this host (engine/incoming.py): id, source, deadline, what was copied; after
    it finished, its id and "finished"; {} for a VM that never came in."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the image store (table `images`, created on open: older databases gain it then)."""

    name: str
    uuid: str
    kind: str
    """"disk" (a qcow2 or raw file) or "oci" (an OCI layout directory)."""
    format: str
    virtual_size: int
    sha256: str
    source: str
    path: str
    imported_at: float


@dataclass(frozen=True)
class OperationRecord:
    id: int
    vm_name: str
    kind: str
    state: str
    started_at: float
    finished_at: float | None
    result: str
    error: str
    steps: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    vm_uuid: str | None = None
    request: str | None = None
    """The API operation this one ran for: its id keeps answering after an agent restart."""


class Store:
    """The spec JSON holds secrets (e.g. VNC passwords), so the database file is root-only (0600).

    synchronous=FULL: in WAL mode every commit is fsynced before it returns, so a journal step recorded before
    its action is on disk even after a power loss (NORMAL may lose the last commits). `synchronous` exists so
    that bench/journal.py can measure what that costs.
    """

    def __init__(self, path: Path, synchronous: Literal["FULL", "NORMAL"] = "FULL"):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        fresh = not path.exists()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(path, 0o600)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._vm_writes = 0
        self._written: set[str] = set()
        """VMs this connection wrote since the last listing: the next one decodes just those again."""
        self._decoded: dict[str, tuple[float, VmRecord]] = {}
        self._listing: tuple[tuple[int, int], list[VmRecord]] | None = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()
        self._db.execute("CREATE INDEX IF NOT EXISTS operations_request ON operations(request)")
        self._db.execute("CREATE INDEX IF NOT EXISTS operations_uuid ON operations(vm_uuid, id)")
        self.snapshots = SnapshotTable(self)

    def _add_missing_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, definition in columns.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def insert_vm(
        self, name: str, *, uuid: str, driver: str, spec: dict[str, Any], state: str, owned_paths: list[str]
    ) -> None:
        now = time.time()
        with self._transaction() as db, _unique(name, uuid):
            self._wrote(name)
            db.execute(
                "INSERT INTO vms (name, uuid, driver, spec, state, owned_paths, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, uuid, driver, json.dumps(spec), state, json.dumps(owned_paths), now, now),
            )

    def update_vm(self, name: str, **changes: Any) -> None:
        """Update columns by name; spec and owned_paths are JSON-encoded here."""
        for column in ("spec", "owned_paths", "since_boot", "migration"):
            if column in changes:
                changes[column] = json.dumps(changes[column])
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._transaction() as db:
            self._wrote(name)
            db.execute(f"UPDATE vms SET {assignments} WHERE name = ?", (*changes.values(), name))

    def delete_vm(self, name: str) -> None:
        with self._transaction() as db:
            self._wrote(name)
            db.execute("DELETE FROM vms WHERE name = ?", (name,))

    def get_vm(self, name: str) -> VmRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM vms WHERE name = ?", (name,)).fetchone()
        return _vm(row) if row else None

    def find_vm(self, name_or_uuid: str) -> VmRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM vms WHERE name = ? OR uuid = ? ORDER BY name = ? DESC LIMIT 1",
                (name_or_uuid, name_or_uuid.lower(), name_or_uuid),
            ).fetchone()
        return _vm(row) if row else None

    def find_migration(self, migration_id: str) -> VmRecord | None:
        """The VM an incoming migration made (or finished) here."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM vms WHERE json_extract(migration, '$.id') = ?", (migration_id,)
            ).fetchone()
        return _vm(row) if row else None

    def uuid_in_use(self, uuid: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM vms WHERE uuid = ?", (uuid,)).fetchone() is not None

    def generation(self) -> tuple[int, int]:
        """Moves whenever the VM table may have changed: SQLite's data_version on other connections' commits,
        `_vm_writes` on this one's VM writes (not on journal steps: a start journals many). Listing caches
        (engine/views.py Listing) are keyed on it."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0]), self._vm_writes

    def list_vms(self) -> list[VmRecord]:
        """Ordered by name, decoded once per change, and then only the rows that changed.

        Listing is the agent's hot path: re-decoding every spec per request made garbage-collection pauses, and
        re-decoding 1000 after each state change cost ~40 ms. Unchanged rows keep their VmRecord objects.
        """
        with self._lock:
            version = self.generation()
            if self._listing is None or self._listing[0] != version:
                other_wrote = self._listing is None or self._listing[0][0] != version[0]
                self._listing = (version, self._redecoded(None if other_wrote else self._written))
                self._written = set()
            return list(self._listing[1])

    def _wrote(self, name: str) -> None:
        """Inside the write's transaction, so under the lock: no listing falls between the write and this."""
        self._vm_writes += 1
        self._written.add(name)

    def _redecoded(self, written: set[str] | None) -> list[VmRecord]:
        """The rows this connection wrote are decoded again; with `written` None (another connection wrote, or
        nothing was listed yet) those whose `updated_at` moved, which every write sets."""
        if written is None:
            versions = self._db.execute("SELECT name, updated_at FROM vms ORDER BY name").fetchall()
            stale = {name for name, updated_at in versions if self._decoded.get(name, (None,))[0] != updated_at}
            fresh = self._decode(stale)
            known = {**self._decoded, **fresh}  # another connection's commit in between: the next call sees it
            self._decoded = {name: known[name] for name, _updated_at in versions if name in known}
        else:
            fresh = self._decode(written)
            gone = written - fresh.keys()
            merged = {name: entry for name, entry in {**self._decoded, **fresh}.items() if name not in gone}
            added = not fresh.keys() <= self._decoded.keys()
            self._decoded = dict(sorted(merged.items())) if added else merged
        return [record for _updated_at, record in self._decoded.values()]

    def _decode(self, names: set[str]) -> dict[str, tuple[float, VmRecord]]:
        """These VMs' rows (the ones that still exist) with their `updated_at`."""
        wanted, fresh = sorted(names), {}
        for start in range(0, len(wanted), DECODE_BATCH):
            batch = wanted[start : start + DECODE_BATCH]
            marks = ", ".join("?" * len(batch))
            for row in self._db.execute(f"SELECT * FROM vms WHERE name IN ({marks})", batch):
                fresh[row["name"]] = (row["updated_at"], _vm(row))
        return fresh

    def insert_image(self, image: ImageRecord) -> None:
        try:
            with self._transaction() as db:
                db.execute(f"INSERT INTO images VALUES ({', '.join('?' * 9)})", tuple(vars(image).values()))
        except sqlite3.IntegrityError:
            raise Conflict(f"an image named {image.name} or with uuid {image.uuid} already exists") from None

    def find_image(self, name_or_uuid: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM images WHERE name = ? OR uuid = ? ORDER BY name = ? DESC LIMIT 1",
                (name_or_uuid, name_or_uuid.lower(), name_or_uuid),
            ).fetchone()
        return ImageRecord(**dict(row)) if row else None

    def list_images(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM images ORDER BY name").fetchall()
        return [ImageRecord(**dict(row)) for row in rows]

    def delete_image(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM images WHERE name = ?", (name,))

    def begin_operation(self, vm_name: str, vm_uuid: str | None, kind: str, request: str | None = None) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO operations (vm_name, vm_uuid, kind, state, started_at, request)"
                " VALUES (?, ?, ?, 'running', ?, ?)",
                (vm_name, vm_uuid, kind, time.time(), request),
            )
            return int(cursor.lastrowid or 0)

    def journal(self, op_id: int, step: str, **data: Any) -> None:
        """Record a step of an operation (and what a recovery must know about it) before the step runs."""
        with self._transaction() as db:
            row = db.execute("SELECT steps, data FROM operations WHERE id = ?", (op_id,)).fetchone()
            steps, known = json.loads(row["steps"]), json.loads(row["data"])
            db.execute(
                "UPDATE operations SET steps = ?, data = ? WHERE id = ?",
                (json.dumps([*steps, step]), json.dumps({**known, **data}), op_id),
            )

    def unfinished_operations(self) -> list[OperationRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM operations WHERE state = 'running' ORDER BY id").fetchall()
        return [_operation(row) for row in rows]

    def finish_operation(self, op_id: int, state: str, result: str = "", error: str = "") -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE operations SET state = ?, finished_at = ?, result = ?, error = ? WHERE id = ?",
                (state, time.time(), result, error, op_id),
            )

    def prune_operations(self, max_age_days: float, max_operations: int) -> int:
        """Forget finished operations older than `max_age_days` and all but the newest `max_operations`
        finished ones; a running operation is a journal a recovery needs and is never pruned. Returns how many
        went. The table stays near `max_operations` rows, so even the age scan is cheap."""
        cutoff = time.time() - max_age_days * 86400
        with self._transaction() as db:
            aged = db.execute("DELETE FROM operations WHERE state != 'running' AND finished_at < ?", (cutoff,)).rowcount
            surplus = db.execute(
                "DELETE FROM operations WHERE state != 'running' AND id < ("
                " SELECT id FROM operations WHERE state != 'running' ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (max_operations - 1,),
            ).rowcount
        return int(aged + surplus)

    def operations_of_request(self, request: str) -> list[OperationRecord]:
        """What one API operation ran (a create with start runs a create and a start), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM operations WHERE request = ? ORDER BY id", (request,)).fetchall()
        return [_operation(row) for row in rows]

    def recent_requests(self, limit: int) -> list[str]:
        """The newest API operations in the journal, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT request FROM operations WHERE request IS NOT NULL GROUP BY request ORDER BY MAX(id) DESC"
                " LIMIT ?",
                (limit,),
            ).fetchall()
        return [row["request"] for row in rows]

    def operations(
        self, vm_name: str | None = None, limit: int = 50, *, vm_uuid: str | None = None
    ) -> list[OperationRecord]:
        """Newest first; by UUID to see one VM's history only, not that of an earlier VM of the same name."""
        query = "SELECT * FROM operations"
        params: tuple[Any, ...] = ()
        if vm_uuid is not None:
            query += " WHERE vm_uuid = ?"
            params = (vm_uuid,)
        elif vm_name is not None:
            query += " WHERE vm_name = ?"
            params = (vm_name,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [_operation(row) for row in rows]


@dataclass(frozen=True)
class SnapshotRecord:
    """A snapshot vmhost took: full (disks and, for a running VM, memory) or disk-only (external overlays:
    `layers` maps each disk's target to the overlay file that holds what was written after it)."""

    vm_uuid: str
    name: str
    disk_only: bool
    vm_state: str
    """The VM's state when it was taken (running or stopped)."""
    layers: dict[str, str]
    created_at: float
    spec_digest: str = ""
    """The VM's stored spec when it was taken (a revert redefines the VM only when the spec changed since)."""


class SnapshotTable:
    """The snapshots table, on the store's connection (Store.snapshots)."""

    def __init__(self, store: "Store"):
        self._store = store

    def insert(self, record: SnapshotRecord) -> None:
        with self._store._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO snapshots"
                " (vm_uuid, name, disk_only, vm_state, layers, created_at, spec_digest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.vm_uuid,
                    record.name,
                    int(record.disk_only),
                    record.vm_state,
                    json.dumps(record.layers),
                    record.created_at,
                    record.spec_digest,
                ),
            )

    def of_vm(self, vm_uuid: str) -> list[SnapshotRecord]:
        """Oldest first."""
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT * FROM snapshots WHERE vm_uuid = ? ORDER BY created_at, rowid", (vm_uuid,)
            ).fetchall()
        return [_snapshot(row) for row in rows]

    def get(self, vm_uuid: str, name: str) -> SnapshotRecord | None:
        return next((s for s in self.of_vm(vm_uuid) if s.name == name), None)

    def delete(self, vm_uuid: str, name: str | None = None) -> None:
        """One snapshot's row, or (name None) every row of the VM."""
        with self._store._transaction() as db:
            if name is None:
                db.execute("DELETE FROM snapshots WHERE vm_uuid = ?", (vm_uuid,))
            else:
                db.execute("DELETE FROM snapshots WHERE vm_uuid = ? AND name = ?", (vm_uuid, name))


def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
    return SnapshotRecord(
        vm_uuid=row["vm_uuid"],
        name=row["name"],
        disk_only=bool(row["disk_only"]),
        vm_state=row["vm_state"],
        layers=json.loads(row["layers"]),
        created_at=row["created_at"],
        spec_digest=row["spec_digest"],
    )


@contextmanager
def _unique(name: str, uuid: str) -> Iterator[None]:
    """Two creates racing for one name or UUID: the loser gets a conflict, not a database error."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise Conflict(f"a VM named {name} or with uuid {uuid} already exists") from None


def _operation(row: sqlite3.Row) -> OperationRecord:
    return OperationRecord(
        id=row["id"],
        vm_name=row["vm_name"],
        kind=row["kind"],
        state=row["state"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error=row["error"],
        steps=json.loads(row["steps"]),
        data=json.loads(row["data"]),
        vm_uuid=row["vm_uuid"],
        request=row["request"],
    )


def _vm(row: sqlite3.Row) -> VmRecord:
    return VmRecord(
        name=row["name"],
        uuid=row["uuid"],
        driver=row["driver"],
        spec=json.loads(row["spec"]),
        state=row["state"],
        reason=row["reason"],
        owned_paths=json.loads(row["owned_paths"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        desired_state=row["desired_state"],
        restart_count=row["restart_count"],
        last_exit_reason=row["last_exit_reason"],
        next_retry_at=row["next_retry_at"],
        started_at=row["started_at"],
        since_boot=json.loads(row["since_boot"]),
        migration=json.loads(row["migration"]),
    )

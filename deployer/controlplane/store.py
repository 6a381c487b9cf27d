"""SQLite persistence of the embedded control plane.

One file, `<state_dir>/controlplane.sqlite3`, in WAL mode so readers never block the writer and two
processes (two `flyte-deploy deploy` runs, or a deploy next to `flyte-deploy serve`) can share it.
Each deploy request is one `BEGIN IMMEDIATE` transaction: the existence check and the insert happen
under the write lock, so two processes racing on one version end with exactly one row and the loser
sees it as existing.

flyteidl2's `TaskService` has no delete RPC, so cleanup (PR previews) is a local call on this class,
`delete_versions(project, domain, prefix)`, which `EmbeddedControlPlane.delete_versions` exposes.

The embedded plane is single-tenant: every method accepts an `org` and ignores it. The flyte SDK
derives an org from the endpoint's host name when none is configured (`dns:///127.0.0.1:8090` gives
org "127", `localhost` gives ""), so scoping by it would hide a task deployed through one spelling of
the address from a reader using another. Stored keys come back with `org=""`.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flyteidl2.task.task_definition_pb2 import TaskSpec, TaskTrigger

from deployer.controlplane import app_store, trigger_store
from deployer.controlplane.specs import canonical_bytes, spec_digest, spec_from_bytes
from deployer.errors import ControlPlaneError

DB_NAME = "controlplane.sqlite3"
_BUSY_TIMEOUT_S = 30.0
_POOL_SIZE = 16

# Schema N is reached by running migrations 1..N in order, each in the transaction that records it, so a
# state dir written by an older flyte-deploy is upgraded in place and a newer one is refused.
_MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS tasks (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    spec BLOB NOT NULL,
    digest TEXT NOT NULL,
    environment TEXT NOT NULL,
    short_name TEXT NOT NULL,
    is_entrypoint INTEGER NOT NULL,
    deployed_at_ns INTEGER NOT NULL,
    triggers BLOB NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (project, domain, name, deployed_at_ns);
""",
    # Projects (flyteidl2 ProjectService): a deploy to a project the plane does not have is refused. A state
    # dir written before projects existed keeps working: every project it holds tasks of is created.
    """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    labels BLOB NOT NULL,
    state INTEGER NOT NULL,
    created_at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_version ON tasks (project, domain, version);
INSERT OR IGNORE INTO projects (id, name, description, labels, state, created_at_ns)
    SELECT DISTINCT project, project, '', x'', 0, 0 FROM tasks;
""",
    # Triggers with their revisions (flyteidl2 TriggerService) and apps with theirs (AppService).
    trigger_store.MIGRATION + app_store.MIGRATION,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_KEY_MATCH = "project = ? AND domain = ? AND name = ? AND version = ?"
_COLUMNS = (
    "project, domain, name, version, spec, digest, environment, short_name, is_entrypoint, "
    "deployed_at_ns, triggers"
)


@dataclass(frozen=True)
class TaskKey:
    org: str
    """Shown in messages; the store does not scope by it (single tenant)."""
    project: str
    domain: str
    name: str
    version: str

    def __str__(self) -> str:
        scope = f"{self.org}/" if self.org else ""
        return f"{scope}{self.project}/{self.domain}/{self.name}@{self.version}"


@dataclass(frozen=True)
class StoredTask:
    key: TaskKey
    spec_bytes: bytes
    """Deterministic encoding of the `TaskSpec` exactly as deployed."""
    digest: str
    environment: str
    short_name: str
    is_entrypoint: bool
    deployed_at_ns: int
    trigger_bytes: tuple[bytes, ...]

    @property
    def spec(self) -> TaskSpec:
        return spec_from_bytes(self.spec_bytes)

    @property
    def triggers(self) -> list[TaskTrigger]:
        return [TaskTrigger.FromString(b) for b in self.trigger_bytes]


@dataclass(frozen=True)
class StoredProject:
    id: str
    name: str
    description: str
    labels: dict[str, str]
    state: int
    """flyteidl2 `ProjectState` (0: active, 1: archived)."""
    created_at_ns: int


class PutOutcome(enum.StrEnum):
    registered = "registered"
    unchanged = "unchanged"
    """The version exists with a byte-identical spec."""
    conflict = "conflict"
    """The version exists with a different spec; nothing was written."""


class TaskStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ignore_in_git(self.state_dir)
        except OSError as exc:
            raise ControlPlaneError(f"cannot create control plane state dir {self.state_dir}: {exc}") from exc
        with self._connect() as db:
            _enable_wal(db)
            with _write(db):
                _migrate(db, self.path)

    # -- writes ------------------------------------------------------------------------------

    def put(
        self, key: TaskKey, spec: TaskSpec, triggers: Sequence[TaskTrigger] = ()
    ) -> tuple[PutOutcome, StoredTask]:
        """Record `spec` under `key` unless the version exists. Returns what happened and the row
        now stored (the existing one for `unchanged`/`conflict`).

        The task's triggers are written in the same transaction (see `trigger_store.apply_task_triggers`).
        An existing version writes nothing, triggers included: the same deploy again is a no-op (a
        trigger paused by hand since stays paused), and a conflict is refused."""
        new = StoredTask(
            key=key,
            spec_bytes=canonical_bytes(spec),
            digest=spec_digest(spec),
            environment=spec.environment.name,
            short_name=spec.short_name,
            is_entrypoint=spec.task_template.metadata.is_entrypoint,
            deployed_at_ns=time.time_ns(),
            trigger_bytes=tuple(t.SerializeToString(deterministic=True) for t in triggers),
        )
        with self._connect() as db, _write(db):
            existing = self._get(db, key)
            if existing is not None:
                same = existing.digest == new.digest
                return (PutOutcome.unchanged if same else PutOutcome.conflict), existing
            db.execute(
                f"INSERT INTO tasks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(new),
            )
            trigger_store.apply_task_triggers(
                db, key.project, key.domain, key.name, key.version, triggers, new.deployed_at_ns
            )
        return PutOutcome.registered, new

    def delete_versions(self, project: str, domain: str, prefix: str, *, org: str = "") -> list[StoredTask]:
        """Delete every task whose version starts with `prefix` in a project/domain, in one statement.
        Returns the rows deleted. A prefix ending in a digit never matches a longer number: `pr1`
        matches `pr1-abc`, not `pr12-abc` (PR 1's cleanup must leave PR 12 alone)."""
        number_boundary = prefix[-1:].isdigit()
        with self._connect() as db, _write(db):
            rows = db.execute(
                "DELETE FROM tasks WHERE project = ? AND domain = ? AND substr(version, 1, ?) = ?"
                " AND NOT (? AND substr(version, ? + 1, 1) GLOB '[0-9]')"
                f" RETURNING {_COLUMNS}",
                (project, domain, len(prefix), prefix, number_boundary, len(prefix)),
            ).fetchall()
        return [_stored(r) for r in rows]

    def create_project(self, project: StoredProject) -> bool:
        """Record a project; False when one with that id exists already (nothing is changed)."""
        with self._connect() as db, _write(db):
            cursor = db.execute(
                f"INSERT OR IGNORE INTO projects ({_PROJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                _project_row(project),
            )
            return cursor.rowcount == 1

    def update_project(self, project: StoredProject) -> bool:
        """Replace a project's name, description, labels and state; False when there is no such project."""
        with self._connect() as db, _write(db):
            cursor = db.execute(
                "UPDATE projects SET name = ?, description = ?, labels = ?, state = ? WHERE id = ?",
                (project.name, project.description, _pack_labels(project.labels), project.state, project.id),
            )
            return cursor.rowcount == 1

    # -- reads -------------------------------------------------------------------------------

    def get_project(self, project_id: str) -> StoredProject | None:
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
        return _stored_project(row) if row else None

    def list_projects(self) -> list[StoredProject]:
        """Every project, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY created_at_ns, id"
            ).fetchall()
        return [_stored_project(r) for r in rows]

    def tasks_at_version(self, *, project: str, domain: str, version: str) -> list[StoredTask]:
        """Every task registered under `version` in a project/domain, oldest deploy first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE project = ? AND domain = ? AND version = ?"
                " ORDER BY deployed_at_ns, rowid",
                (project, domain, version),
            ).fetchall()
        return [_stored(r) for r in rows]

    def get(self, key: TaskKey) -> StoredTask | None:
        with self._connect() as db:
            return self._get(db, key)

    def latest_tasks(
        self, *, org: str = "", project: str | None = None, domain: str | None = None
    ) -> list[StoredTask]:
        """The most recently deployed version of each task name in the scope, oldest first."""
        where, params = _scope(project, domain)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks AS t WHERE {where} AND rowid = ("
                " SELECT rowid FROM tasks AS u WHERE u.project = t.project"
                " AND u.domain = t.domain AND u.name = t.name"
                " ORDER BY u.deployed_at_ns DESC, u.rowid DESC LIMIT 1)"
                " ORDER BY t.deployed_at_ns, t.rowid",
                params,
            ).fetchall()
        return [_stored(r) for r in rows]

    def all_tasks(self, *, project: str | None = None, domain: str | None = None) -> list[StoredTask]:
        """Every version of every task in the scope, oldest deploy first."""
        where, params = _scope(project, domain)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks AS t WHERE {where} ORDER BY t.deployed_at_ns, t.rowid", params
            ).fetchall()
        return [_stored(r) for r in rows]

    def count_names(self, *, project: str | None = None, domain: str | None = None) -> int:
        """How many distinct task names the scope holds."""
        where, params = _scope(project, domain)
        with self._connect() as db:
            row = db.execute(
                f"SELECT COUNT(*) FROM (SELECT DISTINCT project, domain, name FROM tasks AS t WHERE {where})",
                params,
            ).fetchone()
        return int(row[0])

    def versions(self, *, org: str = "", project: str, domain: str, name: str) -> list[StoredTask]:
        """Every version of one task, newest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE project = ? AND domain = ? AND name = ?"
                " ORDER BY deployed_at_ns DESC, rowid DESC",
                (project, domain, name),
            ).fetchall()
        return [_stored(r) for r in rows]

    def count(self, key: TaskKey | None = None) -> int:
        with self._connect() as db:
            if key is None:
                return int(db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])
            return int(
                db.execute(
                    f"SELECT COUNT(*) FROM tasks WHERE {_KEY_MATCH}",
                    _key_params(key),
                ).fetchone()[0]
            )

    # -- transactions for the other stores (triggers, apps) --------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction (committed on success, rolled back on error)."""
        with self._connect() as db, _write(db):
            yield db

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (WAL: never blocked by a writer)."""
        with self._connect() as db:
            yield db

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Connections are pooled, one call at a time each: calls come from many server threads (a thread
        # per HTTP connection), and closing the last connection of a WAL database checkpoints it, which
        # costs milliseconds per call.
        with self._pool_lock:
            db = self._pool.pop() if self._pool else None
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise ControlPlaneError(f"cannot open control plane state {self.path}: {exc}") from exc
            fresh = True
        else:
            fresh = False
        healthy = False
        try:
            if fresh:
                db.execute("PRAGMA synchronous=NORMAL")
            yield db
            healthy = not db.in_transaction
        except sqlite3.DatabaseError as exc:
            raise ControlPlaneError(f"control plane state {self.path}: {exc}") from exc
        finally:
            with self._pool_lock:
                keep = healthy and len(self._pool) < _POOL_SIZE
                if keep:
                    self._pool.append(db)
            if not keep:
                db.close()

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for db in pool:
            db.close()

    @staticmethod
    def _get(db: sqlite3.Connection, key: TaskKey) -> StoredTask | None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE {_KEY_MATCH}",
            _key_params(key),
        ).fetchone()
        return _stored(row) if row else None


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise ControlPlaneError(
            f"control plane state {path} has schema {current}, newer than this flyte-deploy reads "
            f"({SCHEMA_VERSION}): upgrade flyte-deploy or use another --state-dir"
        )
    for migration in _MIGRATIONS[current:]:
        # Statement by statement: executescript() would commit the open transaction.
        for statement in filter(str.strip, migration.split(";")):
            db.execute(statement)
    if current < SCHEMA_VERSION:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch a database to WAL (a no-op once it is). SQLite does not wait on a busy lock for this
    switch: when several processes open a new state file together, the losers are told "database is
    locked" at once, so retry within the same budget other statements get."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def ignore_in_git(state_dir: Path) -> None:
    """The default state dir lives inside the user's checkout: keep it out of `git status`, of the
    dirty-tree check that picks the version, and of `copy_style=all` bundles."""
    marker = state_dir / ".gitignore"
    if not marker.exists():
        marker.write_text("# flyte-deploy state (embedded control plane, local storage)\n*\n")


@contextlib.contextmanager
def _write(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the database write lock up front (BEGIN IMMEDIATE) so a
    read-then-insert cannot interleave with another process's."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _scope(project: str | None, domain: str | None) -> tuple[str, list[str]]:
    clauses: list[str] = []
    params: list[str] = []
    if project:
        clauses.append("t.project = ?")
        params.append(project)
    if domain:
        clauses.append("t.domain = ?")
        params.append(domain)
    return " AND ".join(clauses) or "1 = 1", params


def _key_params(key: TaskKey) -> tuple[str, str, str, str]:
    return key.project, key.domain, key.name, key.version


def _row(t: StoredTask) -> tuple[object, ...]:
    return (
        *_key_params(t.key),
        t.spec_bytes,
        t.digest,
        t.environment,
        t.short_name,
        int(t.is_entrypoint),
        t.deployed_at_ns,
        _pack(t.trigger_bytes),
    )


def _stored(row: Sequence[Any]) -> StoredTask:
    # sqlite3 rows are untyped tuples in _COLUMNS order.
    project, domain, name, version, spec, digest, env, short, entry, at, triggers = row
    return StoredTask(
        key=TaskKey("", str(project), str(domain), str(name), str(version)),
        spec_bytes=bytes(spec),
        digest=str(digest),
        environment=str(env),
        short_name=str(short),
        is_entrypoint=bool(entry),
        deployed_at_ns=int(at),
        trigger_bytes=_unpack(bytes(triggers)),
    )


_PROJECT_COLUMNS = "id, name, description, labels, state, created_at_ns"


def _project_row(p: StoredProject) -> tuple[object, ...]:
    return (p.id, p.name, p.description, _pack_labels(p.labels), p.state, p.created_at_ns)


def _stored_project(row: Sequence[Any]) -> StoredProject:
    project_id, name, description, labels, state, created = row
    return StoredProject(
        id=str(project_id),
        name=str(name),
        description=str(description),
        labels=_unpack_labels(bytes(labels)),
        state=int(state),
        created_at_ns=int(created),
    )


def _pack_labels(labels: dict[str, str]) -> bytes:
    items = sorted(labels.items())
    return _pack([part.encode() for pair in items for part in pair])


def _unpack_labels(data: bytes) -> dict[str, str]:
    parts = [p.decode() for p in _unpack(data)]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def _pack(items: Sequence[bytes]) -> bytes:
    # Length-prefixed concatenation: triggers are kept verbatim without another table.
    return b"".join(len(b).to_bytes(4, "big") + b for b in items)


def _unpack(data: bytes) -> tuple[bytes, ...]:
    items, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        items.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return tuple(items)

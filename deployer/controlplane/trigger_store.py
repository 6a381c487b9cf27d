"""SQLite persistence of triggers, as the open-source Flyte 2 backend keeps them (runs/repository/impl).

One row per trigger (project, domain, task name, trigger name) holds its latest state and revision, and
every change appends an immutable snapshot to `trigger_revisions` with what happened (deploy, activate,
deactivate, delete). Deleting is soft: the row stays with `deleted_at` set, so the history stays readable.

A task's triggers are written in the transaction that writes the task (`apply_task_triggers`, called by
`TaskStore.put`): each trigger sent is upserted and pointed at the task's version; when some are sent, the
task's other live triggers are deleted (they are no longer attached). Choices of ours on top:
- versions are immutable here, so deploying an existing version writes nothing, its triggers included (the
  open-source backend overwrites the task and appends a trigger revision on every deploy);
- a DeployTrigger of a trigger exactly as stored appends no revision;
- the automation type is kept as sent (the backend rewrites every non-schedule type to NONE, which would
  turn an artifact trigger into an on-demand one).

The functions take an open connection: callers own the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from flyteidl2.task.common_pb2 import TriggerAutomationSpec
from flyteidl2.task.task_definition_pb2 import TaskTrigger
from flyteidl2.trigger.trigger_definition_pb2 import TriggerRevisionAction, TriggerSpec

MIGRATION = """
CREATE TABLE IF NOT EXISTS triggers (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    task_name TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    task_version TEXT NOT NULL,
    active INTEGER NOT NULL,
    spec BLOB NOT NULL,
    automation_spec BLOB NOT NULL,
    description TEXT NOT NULL,
    deployed_at_ns INTEGER NOT NULL,
    updated_at_ns INTEGER NOT NULL,
    deleted_at_ns INTEGER,
    PRIMARY KEY (project, domain, task_name, name)
);
CREATE TABLE IF NOT EXISTS trigger_revisions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    task_name TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    task_version TEXT NOT NULL,
    active INTEGER NOT NULL,
    spec BLOB NOT NULL,
    automation_spec BLOB NOT NULL,
    description TEXT NOT NULL,
    deployed_at_ns INTEGER NOT NULL,
    updated_at_ns INTEGER NOT NULL,
    deleted_at_ns INTEGER,
    action INTEGER NOT NULL,
    created_at_ns INTEGER NOT NULL,
    PRIMARY KEY (project, domain, task_name, name, revision)
);
CREATE INDEX IF NOT EXISTS triggers_by_version ON triggers (project, domain, task_version);
"""
MAX_DESCRIPTION = 255
_COLUMNS = (
    "project, domain, task_name, name, revision, task_version, active, spec, automation_spec, description, "
    "deployed_at_ns, updated_at_ns, deleted_at_ns"
)
_KEY = "project = ? AND domain = ? AND task_name = ? AND name = ?"


@dataclass(frozen=True)
class TriggerKey:
    project: str
    domain: str
    task_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.project}/{self.domain}/{self.task_name}/{self.name}"


@dataclass(frozen=True)
class StoredTrigger:
    key: TriggerKey
    revision: int
    task_version: str
    active: bool
    spec_bytes: bytes
    """`TriggerSpec` as deployed (its `active`/`task_version`/`description` are the columns')."""
    automation_bytes: bytes
    description: str
    deployed_at_ns: int
    updated_at_ns: int
    deleted_at_ns: int | None = None
    action: int = TriggerRevisionAction.TRIGGER_REVISION_ACTION_DEPLOY
    """For revisions: what made this revision."""
    created_at_ns: int = 0

    @property
    def spec(self) -> TriggerSpec:
        spec = TriggerSpec.FromString(self.spec_bytes)
        spec.active, spec.task_version, spec.description = self.active, self.task_version, self.description
        return spec

    @property
    def automation_spec(self) -> TriggerAutomationSpec:
        return TriggerAutomationSpec.FromString(self.automation_bytes)

    def same_state(self, other: StoredTrigger) -> bool:
        return (
            self.deleted_at_ns is None
            and other.deleted_at_ns is None
            and (self.task_version, self.active, self.spec_bytes, self.automation_bytes, self.description)
            == (other.task_version, other.active, other.spec_bytes, other.automation_bytes, other.description)
        )


def from_task_trigger(
    project: str, domain: str, task_name: str, version: str, trigger: TaskTrigger, now_ns: int
) -> StoredTrigger:
    """A task's embedded trigger as the trigger row it becomes (the backend's `buildTriggerModels`)."""
    spec = TriggerSpec(
        active=trigger.spec.active,
        task_version=version,
        description=trigger.spec.description[:MAX_DESCRIPTION],
        run_spec=trigger.spec.run_spec,
    )
    if trigger.spec.WhichOneof("input_wrapper") == "offloaded_input_data":
        spec.offloaded_input_data.CopyFrom(trigger.spec.offloaded_input_data)
    elif trigger.spec.HasField("inputs"):
        spec.inputs.CopyFrom(trigger.spec.inputs)
    return from_spec(
        TriggerKey(project, domain, task_name, trigger.name), spec, trigger.automation_spec, now_ns
    )


def from_spec(
    key: TriggerKey, spec: TriggerSpec, automation: TriggerAutomationSpec, now_ns: int
) -> StoredTrigger:
    return StoredTrigger(
        key=key,
        revision=0,
        task_version=spec.task_version,
        active=spec.active,
        spec_bytes=spec.SerializeToString(deterministic=True),
        automation_bytes=automation.SerializeToString(deterministic=True),
        description=spec.description[:MAX_DESCRIPTION],
        deployed_at_ns=now_ns,
        updated_at_ns=now_ns,
    )


# ---------------------------------------------------------------------------------------------- writes


def apply_task_triggers(
    db: sqlite3.Connection,
    project: str,
    domain: str,
    task_name: str,
    version: str,
    triggers: Sequence[TaskTrigger],
    now_ns: int,
) -> None:
    """Within the caller's transaction: the task's triggers as sent, its detached ones deleted."""
    if not triggers:
        return  # as the backend: a deploy without triggers leaves the task's triggers alone
    sent = {t.name for t in triggers}
    for old in live(db, project=project, domain=domain, task_name=task_name):
        if old.key.name not in sent:
            delete(db, old.key, now_ns)
    for trigger in triggers:
        upsert(db, from_task_trigger(project, domain, task_name, version, trigger, now_ns), now_ns)


def upsert(
    db: sqlite3.Connection, new: StoredTrigger, now_ns: int, *, expected_revision: int = 0
) -> StoredTrigger:
    """Deploy a trigger: its next revision (or the stored one, unchanged, when it is identical).

    `expected_revision` > 0: optimistic locking, refused with `StaleRevision` when another revision landed."""
    old = get(db, new.key)
    if expected_revision and (old is None or old.revision != expected_revision):
        raise StaleRevision(new.key, expected_revision, old.revision if old else 0)
    if old is not None and old.same_state(new):
        return old
    stored = replace(
        new,
        revision=(old.revision if old else 0) + 1,
        deployed_at_ns=now_ns,
        # The backend moves updated_at only when the activation changes.
        updated_at_ns=now_ns if old is None or old.active != new.active else old.updated_at_ns,
        deleted_at_ns=None,
    )
    db.execute(f"INSERT OR REPLACE INTO triggers ({_COLUMNS}) VALUES ({_marks(13)})", _row(stored))
    _record(db, stored, TriggerRevisionAction.TRIGGER_REVISION_ACTION_DEPLOY, now_ns)
    return stored


def set_active(db: sqlite3.Connection, key: TriggerKey, active: bool, now_ns: int) -> StoredTrigger | None:
    """Activate or deactivate a live trigger; None when there is none or it already is."""
    old = get(db, key)
    if old is None or old.deleted_at_ns is not None or old.active == active:
        return None
    stored = replace(old, active=active, revision=old.revision + 1, updated_at_ns=now_ns)
    db.execute(
        f"UPDATE triggers SET active = ?, revision = ?, updated_at_ns = ? WHERE {_KEY}",
        (int(active), stored.revision, now_ns, *_key(key)),
    )
    action = TriggerRevisionAction.TRIGGER_REVISION_ACTION_ACTIVATE
    if not active:
        action = TriggerRevisionAction.TRIGGER_REVISION_ACTION_DEACTIVATE
    _record(db, stored, action, now_ns)
    return stored


def delete(db: sqlite3.Connection, key: TriggerKey, now_ns: int) -> StoredTrigger | None:
    """Soft-delete a live trigger (inactive, `deleted_at` set); None when there is none."""
    old = get(db, key)
    if old is None or old.deleted_at_ns is not None:
        return None
    stored = replace(old, active=False, revision=old.revision + 1, deleted_at_ns=now_ns)
    db.execute(
        f"UPDATE triggers SET active = 0, revision = ?, deleted_at_ns = ? WHERE {_KEY}",
        (stored.revision, now_ns, *_key(key)),
    )
    _record(db, stored, TriggerRevisionAction.TRIGGER_REVISION_ACTION_DELETE, now_ns)
    return stored


class StaleRevision(Exception):
    def __init__(self, key: TriggerKey, expected: int, current: int) -> None:
        super().__init__(f"trigger {key} is at revision {current}, not {expected}: fetch it again and retry")


# ---------------------------------------------------------------------------------------------- reads


def get(db: sqlite3.Connection, key: TriggerKey) -> StoredTrigger | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM triggers WHERE {_KEY}", _key(key)).fetchone()
    return _stored(row) if row else None


def find_live(
    db: sqlite3.Connection, project: str, domain: str, task_name: str, name: str
) -> StoredTrigger | None:
    """The live trigger by name; an empty `task_name` matches any task (as the backend allows)."""
    if task_name:
        found = get(db, TriggerKey(project, domain, task_name, name))
        return found if found is not None and found.deleted_at_ns is None else None
    row = db.execute(
        f"SELECT {_COLUMNS} FROM triggers WHERE project = ? AND domain = ? AND name = ?"
        " AND deleted_at_ns IS NULL ORDER BY updated_at_ns DESC LIMIT 1",
        (project, domain, name),
    ).fetchone()
    return _stored(row) if row else None


def live(
    db: sqlite3.Connection,
    *,
    project: str | None = None,
    domain: str | None = None,
    task_name: str | None = None,
    task_version: str | None = None,
) -> list[StoredTrigger]:
    """Live triggers in a scope, active first, most recently updated first (the backend's order)."""
    clauses, params = ["deleted_at_ns IS NULL"], []
    for column, value in (
        ("project", project),
        ("domain", domain),
        ("task_name", task_name),
        ("task_version", task_version),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM triggers WHERE {' AND '.join(clauses)}"
        " ORDER BY active DESC, updated_at_ns DESC, task_name, name",
        params,
    ).fetchall()
    return [_stored(r) for r in rows]


def revisions(db: sqlite3.Connection, key: TriggerKey) -> list[StoredTrigger]:
    """Every revision of a trigger, newest first."""
    rows = db.execute(
        f"SELECT {_COLUMNS}, action, created_at_ns FROM trigger_revisions WHERE {_KEY}"
        " ORDER BY revision DESC",
        _key(key),
    ).fetchall()
    return [_stored(r) for r in rows]


def revision(db: sqlite3.Connection, key: TriggerKey, number: int) -> StoredTrigger | None:
    row = db.execute(
        f"SELECT {_COLUMNS}, action, created_at_ns FROM trigger_revisions WHERE {_KEY} AND revision = ?",
        (*_key(key), number),
    ).fetchone()
    return _stored(row) if row else None


# ---------------------------------------------------------------------------------------------- rows


def _record(db: sqlite3.Connection, t: StoredTrigger, action: int, now_ns: int) -> None:
    db.execute(
        f"INSERT INTO trigger_revisions ({_COLUMNS}, action, created_at_ns) VALUES ({_marks(15)})",
        (*_row(t), int(action), now_ns),
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _key(key: TriggerKey) -> tuple[str, str, str, str]:
    return key.project, key.domain, key.task_name, key.name


def _row(t: StoredTrigger) -> tuple[object, ...]:
    return (
        *_key(t.key),
        t.revision,
        t.task_version,
        int(t.active),
        t.spec_bytes,
        t.automation_bytes,
        t.description,
        t.deployed_at_ns,
        t.updated_at_ns,
        t.deleted_at_ns,
    )


def _stored(row: Sequence[Any]) -> StoredTrigger:
    (
        project,
        domain,
        task_name,
        name,
        rev,
        version,
        active,
        spec,
        automation,
        description,
        deployed,
        updated,
        deleted,
    ) = row[:13]
    extra = row[13:]
    return StoredTrigger(
        key=TriggerKey(str(project), str(domain), str(task_name), str(name)),
        revision=int(rev),
        task_version=str(version),
        active=bool(active),
        spec_bytes=bytes(spec),
        automation_bytes=bytes(automation),
        description=str(description),
        deployed_at_ns=int(deployed),
        updated_at_ns=int(updated),
        deleted_at_ns=int(deleted) if deleted is not None else None,
        action=int(extra[0]) if extra else TriggerRevisionAction.TRIGGER_REVISION_ACTION_DEPLOY,
        created_at_ns=int(extra[1]) if extra else 0,
    )

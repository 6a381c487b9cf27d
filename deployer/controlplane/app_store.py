"""SQLite persistence of apps: one row per (project, domain, name) with its current revision, and every
revision kept in `app_revisions` with the reason it was made.

Apps are mutable (flyteidl2 `AppService`): creating one that exists is refused, an update names the
revision it replaces (optimistic locking) and becomes the next one. Deleting removes the app and its
history, as the backend removes the app's service. The functions take an open connection: callers own
the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flyteidl2.app.app_definition_pb2 import App

MIGRATION = """
CREATE TABLE IF NOT EXISTS apps (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    app BLOB NOT NULL,
    created_at_ns INTEGER NOT NULL,
    updated_at_ns INTEGER NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE TABLE IF NOT EXISTS app_revisions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    app BLOB NOT NULL,
    reason TEXT NOT NULL,
    created_at_ns INTEGER NOT NULL,
    PRIMARY KEY (project, domain, name, revision)
);
"""
_COLUMNS = "project, domain, name, revision, app, created_at_ns, updated_at_ns"
_KEY = "project = ? AND domain = ? AND name = ?"


@dataclass(frozen=True)
class AppKey:
    project: str
    domain: str
    name: str

    def __str__(self) -> str:
        return f"{self.project}/{self.domain}/{self.name}"


@dataclass(frozen=True)
class StoredApp:
    key: AppKey
    revision: int
    app_bytes: bytes
    """The `App` (metadata and spec) as last created or updated, without status."""
    created_at_ns: int
    updated_at_ns: int

    @property
    def app(self) -> App:
        return App.FromString(self.app_bytes)


@dataclass(frozen=True)
class AppRevision:
    revision: int
    app_bytes: bytes
    reason: str
    created_at_ns: int

    @property
    def app(self) -> App:
        return App.FromString(self.app_bytes)


def create(db: sqlite3.Connection, key: AppKey, app: App, now_ns: int, reason: str) -> StoredApp | None:
    """Record a new app at revision 1; None when one with that key exists (nothing is written)."""
    if get(db, key) is not None:
        return None
    stored = StoredApp(key, 1, _bytes(app, 1), now_ns, now_ns)
    db.execute(f"INSERT INTO apps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", _row(stored))
    _record(db, stored, reason, now_ns)
    return stored


def update(db: sqlite3.Connection, old: StoredApp, app: App, now_ns: int, reason: str) -> StoredApp:
    """The next revision of `old` (the caller has checked the revision it replaces)."""
    stored = StoredApp(old.key, old.revision + 1, _bytes(app, old.revision + 1), old.created_at_ns, now_ns)
    db.execute(
        f"UPDATE apps SET revision = ?, app = ?, updated_at_ns = ? WHERE {_KEY}",
        (stored.revision, stored.app_bytes, now_ns, *_key(old.key)),
    )
    _record(db, stored, reason, now_ns)
    return stored


def delete(db: sqlite3.Connection, key: AppKey) -> bool:
    cursor = db.execute(f"DELETE FROM apps WHERE {_KEY}", _key(key))
    db.execute(f"DELETE FROM app_revisions WHERE {_KEY}", _key(key))
    return cursor.rowcount == 1


def get(db: sqlite3.Connection, key: AppKey) -> StoredApp | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM apps WHERE {_KEY}", _key(key)).fetchone()
    return _stored(row) if row else None


def listed(
    db: sqlite3.Connection, *, project: str | None = None, domain: str | None = None
) -> list[StoredApp]:
    """Apps in a scope, most recently updated first."""
    clauses, params = ["1 = 1"], []
    for column, value in (("project", project), ("domain", domain)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM apps WHERE {' AND '.join(clauses)} ORDER BY updated_at_ns DESC, name",
        params,
    ).fetchall()
    return [_stored(r) for r in rows]


def history(db: sqlite3.Connection, key: AppKey) -> list[AppRevision]:
    """Every revision of an app, newest first."""
    rows = db.execute(
        f"SELECT revision, app, reason, created_at_ns FROM app_revisions WHERE {_KEY} ORDER BY revision DESC",
        _key(key),
    ).fetchall()
    return [AppRevision(int(r), bytes(a), str(why), int(at)) for r, a, why, at in rows]


def _bytes(app: App, revision: int) -> bytes:
    clean = App()
    clean.CopyFrom(app)
    clean.ClearField("status")
    clean.metadata.revision = revision
    data: bytes = clean.SerializeToString(deterministic=True)
    return data


def _record(db: sqlite3.Connection, stored: StoredApp, reason: str, now_ns: int) -> None:
    db.execute(
        "INSERT INTO app_revisions (project, domain, name, revision, app, reason, created_at_ns)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*_key(stored.key), stored.revision, stored.app_bytes, reason, now_ns),
    )


def _key(key: AppKey) -> tuple[str, str, str]:
    return key.project, key.domain, key.name


def _row(s: StoredApp) -> tuple[object, ...]:
    return (*_key(s.key), s.revision, s.app_bytes, s.created_at_ns, s.updated_at_ns)


def _stored(row: Sequence[Any]) -> StoredApp:
    project, domain, name, revision, app, created, updated = row
    return StoredApp(
        AppKey(str(project), str(domain), str(name)), int(revision), bytes(app), int(created), int(updated)
    )

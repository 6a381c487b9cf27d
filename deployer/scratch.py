"""Scratch directories that the next run removes when the run that made them is gone.

A run's scratch directory `PARENT/PREFIX<random>` has a sibling lock file `PARENT/PREFIX<random>.lock`
that its owner holds with flock(2) for as long as the directory lives. The kernel drops the lock when
the owner dies, however it dies (kill -9 included), so "the lock can be taken" means "the owner is
gone": `sweep` removes exactly those directories and never one of a run still in progress, whatever
its age. The owner takes the lock before the directory exists and removes the directory before the
lock, so a directory without a lock file is always a leftover (of a crash or of an older version).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from deployer.errors import DeployError

LOCK_SUFFIX = ".lock"

Reclaim = Callable[[Path], bool]
"""Called with a dead run's directory before it is removed; False keeps it for a later sweep."""


@contextlib.contextmanager
def held_dir(parent: Path, prefix: str, *, reclaim: Reclaim | None = None) -> Iterator[Path]:
    """A new empty directory `parent/prefix…`, removed on exit; leftovers of dead runs are swept first."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot write to {parent}: {exc.strerror}") from exc
    sweep(parent, prefix, reclaim=reclaim)
    fd, lock, path = _new_lock(parent, prefix)
    try:
        try:
            path.mkdir()
        except OSError as exc:
            raise DeployError(f"cannot write to {parent}: {exc.strerror}") from exc
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _new_lock(parent: Path, prefix: str) -> tuple[int, Path, Path]:
    while True:
        name = f"{prefix}{secrets.token_hex(6)}"
        lock = parent / f"{name}{LOCK_SUFFIX}"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise DeployError(f"cannot write to {parent}: {exc.strerror}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A sweeper may have taken the fresh lock first and removed it: then start over.
        if _same_file(fd, lock):
            return fd, lock, parent / name
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def sweep(parent: Path, prefix: str, *, reclaim: Reclaim | None = None) -> list[Path]:
    """Remove the scratch directories under `parent` whose owners are gone; returns them."""
    removed: list[Path] = []
    try:
        entries = sorted(p for p in parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.endswith(LOCK_SUFFIX):
            target = entry.with_name(entry.name.removesuffix(LOCK_SUFFIX))
            if _reclaim_locked(entry, target, reclaim):
                removed.append(target)
        elif entry.is_dir() and not entry.is_symlink():
            # Checked after the directory was seen: an owner's lock file exists before its directory.
            lock = entry.with_name(entry.name + LOCK_SUFFIX)
            if not lock.exists() and (reclaim is None or reclaim(entry)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _reclaim_locked(lock: Path, target: Path, reclaim: Reclaim | None) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive
        if not _same_file(fd, lock):
            return False
        if target.exists() and reclaim is not None and not reclaim(target):
            return False
        shutil.rmtree(target, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock.unlink()
        return True
    finally:
        os.close(fd)

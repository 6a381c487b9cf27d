"""Unpack a bundle safely: nothing lands outside the destination, and nothing lands half-done.

Members are checked one by one while they are written into a private temporary directory next to
the destination; the first bad member (absolute path, `..`, a link leaving the destination, a
device or pipe) aborts with an error naming it and the temporary directory is removed. Only a
complete extraction is moved into place, with a marker recording the archive's sha256, so a
second call (or a second process, which waits on a lock) finds the marker and does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from deployer.errors import BundleError

MARKER = ".flyte-deploy-bundle"
"""File in the destination holding the sha256 of the archive extracted there."""


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror}") from exc
    return sha.hexdigest()


def _extracted(dest: Path, digest: str) -> bool:
    try:
        return (dest / MARKER).read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    # flock is released by the kernel if the holder dies, so a crash never blocks the next run.
    # The lock file is never removed: unlinking it would let a late process lock a fresh inode.
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BundleError(f"cannot create lock file {lock_file}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _refusal(member: tarfile.TarInfo) -> str | None:
    """Why `member` must not be extracted, or None."""
    name = member.name
    if name.startswith("/"):
        return "has an absolute path"
    parts = posixpath.normpath(name).split("/")
    if ".." in name.split("/") or parts[0] == "..":
        return "has '..' in its path"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a named pipe"
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            return f"is a link to the absolute path {target}"
        base = posixpath.dirname(name) if member.issym() else ""
        if posixpath.normpath(posixpath.join(base, target)).split("/")[0] == "..":
            return f"is a link to {target}, outside the destination"
    elif not (member.isreg() or member.isdir()):
        return "is neither a file, a directory nor a link"
    return None


def _unpack(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                reason = _refusal(member)
                if reason is not None:
                    raise BundleError(f"refusing to extract {archive.name}: member {member.name!r} {reason}")
                try:
                    # Python's "data" filter re-checks against the real filesystem (links via links).
                    tar.extract(member, into, filter="data")
                except tarfile.FilterError as exc:
                    raise BundleError(
                        f"refusing to extract {archive.name}: member {member.name!r}: {exc}"
                    ) from exc
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BundleError(f"cannot extract {archive}: {exc}") from exc


def _merge(source: Path, dest: Path) -> None:
    """Move every file of `source` into the existing directory `dest`, replacing what is there."""
    for root, dirs, files in os.walk(source):
        target = dest / Path(root).relative_to(source)
        target.mkdir(exist_ok=True)
        for name in files:
            os.replace(Path(root) / name, target / name)
        for name in dirs:
            moved, existing = Path(root) / name, target / name
            if moved.is_symlink():  # os.walk lists links to directories here but never enters them
                os.replace(moved, existing)
            elif existing.is_symlink() or existing.is_file():
                existing.unlink()


def _extract_locked(archive: Path, dest: Path, digest: str) -> None:
    if (dest / MARKER).exists():
        raise BundleError(f"cannot extract {archive.name} into {dest}: it holds another bundle")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
    try:
        _unpack(archive, tmp)
        if dest.is_dir() and any(dest.iterdir()):
            _merge(tmp, dest)
            (dest / MARKER).write_text(digest + "\n")
        else:
            (tmp / MARKER).write_text(digest + "\n")
            # Atomic: readers see nothing or everything (rename replaces an empty directory).
            os.replace(tmp, dest)
    except OSError as exc:
        raise BundleError(f"cannot extract into {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_bundle(archive: Path, dest: Path) -> Path:
    """Extract `archive` into the directory `dest` once; returns `dest`.

    Safe to call again (a no-op) and from several processes at once (one extracts, the others
    wait and then find it done). A `dest` that already holds a different bundle is an error.
    """
    dest = Path(os.path.abspath(dest))
    digest = file_sha256(archive)
    if _extracted(dest, digest):
        return dest
    if dest.exists() and not dest.is_dir():
        raise BundleError(f"cannot extract into {dest}: it is not a directory")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {dest.parent}: {exc.strerror}") from exc
    with _locked(dest.parent / f".{dest.name}.lock"):
        if not _extracted(dest, digest):
            _extract_locked(archive, dest, digest)
    return dest

"""The bundle bytes: a gzip-compressed tar that is a pure function of the files' paths and content.

Entries are regular files only, sorted by path, with a fixed mtime, uid/gid 0, empty owner names
and mode 0644 or 0755 (executable if any execute bit is set), so clones with different mtimes,
umask or directory order give identical bytes. Files are streamed: memory stays bounded whatever
the project's size.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from deployer.bundle.pgzip import DEFAULT_LEVEL, ParallelGzipWriter
from deployer.errors import BundleError
from deployer.models import BundleArtifact

FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z, the earliest time zip (and so wheels) can hold
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
READ_CHUNK = 1 << 20
SUFFIX = ".tar.gz"


def _tarfile_header(name: str, size: int, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = mode
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # ustar when the name fits, else a pax record: both are fixed by the name alone.
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _ustar_parts(mode: int) -> tuple[bytes, bytes]:
    """The bytes of a header around the name and size fields, as `tarfile` writes them."""
    empty = _tarfile_header("", 0, mode)
    return empty[100:124], empty[136:148] + b"        " + empty[156:]


_USTAR = {mode: _ustar_parts(mode) for mode in (0o644, 0o755)}
_USTAR_SIZE_LIMIT = 8**11


def _header(name: str, size: int, executable: bool) -> bytes:
    """`_tarfile_header`'s bytes, built directly for the common case (tarfile is slow per file)."""
    mode = 0o755 if executable else 0o644
    if len(name) > tarfile.LENGTH_NAME or not name.isascii() or size >= _USTAR_SIZE_LIMIT:
        return _tarfile_header(name, size, mode)
    before_size, after_size = _USTAR[mode]
    header = bytearray(name.encode("ascii").ljust(100, b"\0"))
    header += before_size
    header += b"%011o\0" % size
    header += after_size
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def checked_names(files: Sequence[str]) -> list[str]:
    """Sorted, unique names; each a clean relative POSIX path."""
    names = sorted(set(files))
    for name in names:
        parts = name.split("/")
        if not name or name.startswith("/") or posixpath.normpath(name) != name or ".." in parts:
            raise BundleError(f"bad bundle path {name!r}: must be a clean path relative to root_dir")
    return names


class _Guard:
    """Refuses any file whose real location is outside root_dir, whatever the file list says."""

    def __init__(self, root_dir: Path) -> None:
        self.root = os.path.abspath(root_dir)
        self.real = os.path.realpath(self.root)
        self._dirs: dict[str, bool] = {"": True}

    def _inside(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def check(self, name: str) -> os.stat_result:
        parent = posixpath.dirname(name)
        if parent not in self._dirs:
            self._dirs[parent] = self._inside(os.path.realpath(os.path.join(self.root, parent)))
        path = os.path.join(self.root, name)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or not self._dirs[parent]:
                real = os.path.realpath(path, strict=True)
                if not self._inside(real):
                    raise BundleError(f"{name} points outside root_dir {self.root} (to {real})")
                st = os.stat(real)
        except FileNotFoundError as exc:
            raise BundleError(f"{name} vanished before it could be bundled (under {self.root})") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BundleError(f"symlink loop at {name} (under {self.root})") from exc
            raise BundleError(f"cannot read {name}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{name} is not a regular file (under {self.root})")
        return st


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _add_file(out: _Writer, path: str, name: str) -> int:
    try:
        with open(path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            header = _header(name, st.st_size, bool(st.st_mode & 0o111))
            out.write(header)
            remaining = st.st_size
            while remaining:
                chunk = f.read(min(remaining, READ_CHUNK))
                if not chunk:
                    raise BundleError(f"{name} shrank while it was being bundled")
                out.write(chunk)
                remaining -= len(chunk)
            if f.read(1):
                raise BundleError(f"{name} grew while it was being bundled")
    except OSError as exc:
        raise BundleError(f"cannot read {name}: {exc.strerror}") from exc
    padding = -st.st_size % BLOCK
    if padding:
        out.write(bytes(padding))
    return len(header) + st.st_size + padding


def write_archive(
    root_dir: Path,
    files: Sequence[str],
    sink: Callable[[bytes], object],
    *,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
) -> None:
    """Stream the compressed tar of `files` (relative to root_dir) into `sink`."""
    names = checked_names(files)
    guard = _Guard(root_dir)
    out = ParallelGzipWriter(sink, level=level, threads=threads)
    try:
        written = 0
        for name in names:
            guard.check(name)
            written += _add_file(out, os.path.join(guard.root, name), name)
        # End of archive: two zero blocks, then zeros up to a whole record, as tar(1) writes.
        end = 2 * BLOCK
        end += -(written + end) % RECORD
        out.write(bytes(end))
    except BaseException:
        out.abort()
        raise
    out.close()


class _Digest:
    def __init__(self, file: object | None = None, *, where: Path | None = None) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self._write = getattr(file, "write", None)
        self._where = where

    def __call__(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        if self._write is not None:
            try:
                self._write(data)
            except OSError as exc:
                # Not an OSError: the readers of source files must not report it as theirs.
                raise _write_error(self._where, exc) from exc


def _write_error(out_dir: Path | None, exc: OSError) -> BundleError:
    return BundleError(f"cannot write the bundle to {out_dir}: {exc.strerror or exc}")


def archive_digest(root_dir: Path, files: Sequence[str]) -> tuple[str, int]:
    """sha256 (hex) and size of the bundle `build_bundle` would write, without writing it."""
    digest = _Digest()
    write_archive(root_dir, files, digest)
    return digest.sha.hexdigest(), digest.size


def build_bundle(root_dir: Path, files: Sequence[str], out_dir: Path) -> BundleArtifact:
    """Write `<out_dir>/<sha256>.tar.gz`; the file appears complete or not at all."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".bundle-", suffix=".part")
    except OSError as exc:
        raise BundleError(f"cannot write to output directory {out_dir}: {exc.strerror}") from exc
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _Digest(out, where=out_dir)
                write_archive(root_dir, files, digest)
        except OSError as exc:  # the last buffered bytes, written when the file closes
            raise _write_error(out_dir, exc) from exc
        final = out_dir / f"{digest.sha.hexdigest()}{SUFFIX}"
        try:
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except OSError as exc:
            raise BundleError(f"cannot write {final}: {exc.strerror}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return BundleArtifact(
        digest=digest.sha.hexdigest(), size=digest.size, path=final, files=tuple(checked_names(files))
    )


def _directory_header(name: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mtime = FIXED_MTIME
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_tar(root_dir: Path, files: Sequence[str], out: _Writer, *, prefix: str = "") -> int:
    """An uncompressed tar of `files` written like a bundle (sorted, the bundle's file headers, the
    same guard against paths leaving root_dir), each name under `prefix`, plus an entry (0755, fixed
    time, root) for every directory between `prefix` and a file, placed before its first file.
    Returns the bytes written.

    An image layer is such a tar: the same commit gives the same layer, hence the same image digest,
    on any machine; the directory entries give the layer's folders fixed metadata too."""
    names = checked_names(files)
    base = prefix.strip("/")
    if base and checked_names([base]) != [base]:
        raise BundleError(f"bad layer prefix {prefix!r}")
    guard = _Guard(root_dir)
    written = 0
    emitted: set[str] = set()
    for name in names:
        guard.check(name)
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory not in emitted:
                emitted.add(directory)
                header = _directory_header(posixpath.join(base, directory) + "/")
                out.write(header)
                written += len(header)
        written += _add_file(out, os.path.join(guard.root, name), posixpath.join(base, name))
    end = 2 * BLOCK
    end += -(written + end) % RECORD
    out.write(bytes(end))
    return written + end

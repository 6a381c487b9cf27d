"""Deterministic Docker build contexts, streamed.

A context is a set of (relative path → file or bytes, mode) entries. Its tarball has sorted entries,
a fixed mtime, uid/gid 0 and no owner names, so the same inputs give the same bytes on any machine:
that is what makes the image identity (a hash of those bytes) a pure function of the inputs. The
legacy builder keeps file mtimes in COPY layers, so the fixed mtime also keeps those layers stable.

Files are referenced, not read, when they are added; the tarball is produced in chunks when it is
hashed or sent to a builder, so a context holding a 1 GB file costs a few MB of memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deployer.errors import BuildError

FIXED_MTIME = 0
CHUNK = 1 << 20


@dataclass(frozen=True)
class ContextEntry:
    path: str
    """POSIX path inside the context, relative, no `..`."""
    mode: int
    size: int
    source: Path | None = None
    """The file the bytes come from (read when the context is streamed), or None for `content`."""
    content: bytes = b""

    @property
    def data(self) -> bytes:
        """The entry's bytes (reads the file: for tests and small entries)."""
        if self.source is None:
            return self.content
        return b"".join(_file_chunks(self))


class BuildContext:
    """Files a Dockerfile can COPY (or bind-mount), keyed by their path in the context."""

    def __init__(self) -> None:
        self._entries: dict[str, ContextEntry] = {}

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> str:
        return self._add(ContextEntry(_clean(path), mode, len(data), content=data))

    def add_file(self, path: str, src: Path) -> str:
        try:
            st = src.stat()
        except OSError as exc:
            raise BuildError(f"cannot read {src} for the image build context: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"{src} is not a regular file: it cannot go into an image build context")
        mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
        return self._add(ContextEntry(_clean(path), mode, st.st_size, source=src))

    def add_files(self, prefix: str, root: Path, relative_paths: Iterable[str]) -> tuple[str, ...]:
        """Add `root/<rel>` as `prefix/<rel>` for every relative path, keeping the layout."""
        return tuple(self.add_file(f"{prefix}/{rel}", root / rel) for rel in relative_paths)

    def merged(self, other: BuildContext) -> BuildContext:
        """A new context with the entries of both (the same path must hold the same content)."""
        result = BuildContext()
        for entry in (*self._entries.values(), *other._entries.values()):
            result._add(entry)
        return result

    def __contains__(self, path: str) -> bool:
        return _clean(path) in self._entries

    def entries(self) -> tuple[ContextEntry, ...]:
        return tuple(self._entries[k] for k in sorted(self._entries))

    def chunks(self) -> Iterator[bytes]:
        """The tarball, in chunks of at most about 1 MiB (the bytes `tar_bytes` returns)."""
        written = 0
        for directory in self._directories():
            header = _header(directory, tarfile.DIRTYPE, 0o755, 0)
            written += len(header)
            yield header
        for entry in self.entries():
            header = _header(entry.path, tarfile.REGTYPE, entry.mode, entry.size)
            written += len(header)
            yield header
            if entry.source is None:
                yield entry.content
            else:
                yield from _file_chunks(entry)
            padding = -entry.size % tarfile.BLOCKSIZE
            written += entry.size + padding
            if padding:
                yield bytes(padding)
        end = 2 * tarfile.BLOCKSIZE
        end += -(written + end) % tarfile.RECORDSIZE
        yield bytes(end)

    def tar_bytes(self) -> bytes:
        return b"".join(self.chunks())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def _add(self, entry: ContextEntry) -> str:
        existing = self._entries.get(entry.path)
        if existing is not None and not _same(existing, entry):
            raise BuildError(f"two different files would land at {entry.path!r} in the build context")
        self._entries[entry.path] = entry
        return entry.path

    def _directories(self) -> list[str]:
        # Explicit directory entries with fixed metadata; otherwise the daemon invents them with "now".
        dirs: set[str] = set()
        for path in self._entries:
            parent = PurePosixPath(path).parent
            while str(parent) != ".":
                dirs.add(str(parent))
                parent = parent.parent
        return sorted(dirs)


def _same(a: ContextEntry, b: ContextEntry) -> bool:
    if a.mode != b.mode or a.size != b.size:
        return False
    if a.source is not None and b.source is not None and os.path.samefile(a.source, b.source):
        return True
    return a.data == b.data


def _file_chunks(entry: ContextEntry) -> Iterator[bytes]:
    assert entry.source is not None
    remaining = entry.size
    try:
        with open(entry.source, "rb", buffering=0) as file:
            while remaining:
                chunk = file.read(min(remaining, CHUNK))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
            grew = bool(file.read(1))
    except OSError as exc:
        raise BuildError(f"cannot read {entry.source} for the image build context: {exc.strerror}") from exc
    if remaining or grew:
        raise BuildError(f"{entry.source} changed while the image build context was being written: retry")


def _header(name: str, kind: bytes, mode: int, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _clean(path: str) -> str:
    posix = PurePosixPath(path.replace(os.sep, "/"))
    if posix.is_absolute() or ".." in posix.parts or not posix.parts:
        raise BuildError(f"invalid build-context path {path!r}")
    return str(posix)

"""Deterministic Docker build contexts.

A context is a set of (relative path → bytes, mode) entries. Its tarball has sorted entries, a
fixed mtime, uid/gid 0 and no owner names, so the same inputs give the same bytes on any machine:
that is what makes the image identity (a hash of those bytes) a pure function of the inputs. The
legacy builder keeps file mtimes in COPY layers, so the fixed mtime also keeps code layers stable.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deployer.errors import BuildError

FIXED_MTIME = 0


@dataclass(frozen=True)
class ContextEntry:
    path: str
    """POSIX path inside the context, relative, no `..`."""
    data: bytes
    mode: int


class BuildContext:
    """Files a Dockerfile can COPY, keyed by their path in the context."""

    def __init__(self) -> None:
        self._entries: dict[str, ContextEntry] = {}

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> str:
        clean = _clean(path)
        existing = self._entries.get(clean)
        if existing is not None and existing.data != data:
            raise BuildError(f"two different files would land at {clean!r} in the build context")
        self._entries[clean] = ContextEntry(clean, data, mode)
        return clean

    def add_file(self, path: str, src: Path) -> str:
        try:
            data = src.read_bytes()
            executable = bool(src.stat().st_mode & stat.S_IXUSR)
        except OSError as exc:
            raise BuildError(f"cannot read {src} for the image build context: {exc.strerror}") from exc
        return self.add_bytes(path, data, 0o755 if executable else 0o644)

    def add_files(self, prefix: str, root: Path, relative_paths: Iterable[str]) -> tuple[str, ...]:
        """Add `root/<rel>` as `prefix/<rel>` for every relative path, keeping the layout."""
        return tuple(self.add_file(f"{prefix}/{rel}", root / rel) for rel in relative_paths)

    def __contains__(self, path: str) -> bool:
        return _clean(path) in self._entries

    def entries(self) -> tuple[ContextEntry, ...]:
        return tuple(self._entries[k] for k in sorted(self._entries))

    def tar_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in self._directories():
                tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, 0))
            for entry in self.entries():
                tar.addfile(
                    _info(entry.path, tarfile.REGTYPE, entry.mode, len(entry.data)), io.BytesIO(entry.data)
                )
        return buffer.getvalue()

    def sha256(self) -> str:
        return hashlib.sha256(self.tar_bytes()).hexdigest()

    def _directories(self) -> list[str]:
        # Explicit directory entries with fixed metadata; otherwise the daemon invents them with "now".
        dirs: set[str] = set()
        for path in self._entries:
            parent = PurePosixPath(path).parent
            while str(parent) != ".":
                dirs.add(str(parent))
                parent = parent.parent
        return sorted(dirs)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _clean(path: str) -> str:
    posix = PurePosixPath(path.replace(os.sep, "/"))
    if posix.is_absolute() or ".." in posix.parts or not posix.parts:
        raise BuildError(f"invalid build-context path {path!r}")
    return str(posix)

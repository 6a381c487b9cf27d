"""Which host files an image layer may read: those under root_dir, unless explicitly allowed.

`with_source_file('/tmp/x/cred.txt')` or a symlink in a copied folder would otherwise copy any file
of the deploying machine into a pushed image. Outside root_dir is refused with the path named
(allowed by the `allow_outside_sources` setting); the filesystem root and the kernel's virtual
filesystems are refused always: walking them never ends (`/proc/kmsg` blocks a reader forever).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deployer.errors import BuildError

_VIRTUAL = (Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass(frozen=True)
class SourcePolicy:
    root_dir: Path
    allow_outside: bool = False
    hint: str = "allow_outside_sources"
    """How to allow outside paths, quoted in the error."""

    def check(self, path: Path, what: str, image: str) -> Path:
        """`path` resolved (symlinks followed); a BuildError when a layer may not read it."""
        resolved = Path(os.path.realpath(path))
        root = Path(os.path.realpath(self.root_dir))
        if resolved == Path(resolved.anchor) or any(resolved.is_relative_to(v) for v in _VIRTUAL):
            raise BuildError(
                f"image {image!r}: {what} {path} is {_describe(resolved)}: it cannot go into an image"
            )
        if not self.allow_outside and not resolved.is_relative_to(root):
            shown = str(path) if str(path) == str(resolved) else f"{path} (→ {resolved})"
            raise BuildError(
                f"image {image!r}: {what} {shown} is outside root_dir {root}; copy it under root_dir "
                f"or set {self.hint}"
            )
        return resolved

    def walk(self, directory: Path, relative_files: Iterator[str], what: str, image: str) -> Iterator[str]:
        """`relative_files` of `directory`, each checked (a symlink may point anywhere)."""
        for rel in relative_files:
            path = directory / rel
            if path.is_symlink() or not Path(os.path.realpath(path)).is_relative_to(
                Path(os.path.realpath(directory))
            ):
                self.check(path, what, image)
            yield rel


def check_destination(dst: str, image: str) -> str:
    """A layer's destination in the image: absolute, or relative to the working directory without
    climbing out of it (`../../etc`), which would write wherever the base image's workdir leads."""
    if "\n" in dst or "\0" in dst:
        raise BuildError(f"image {image!r}: destination {dst!r} holds a newline or NUL")
    if ".." in PurePosixPath(dst).parts:
        raise BuildError(
            f"image {image!r}: destination {dst!r} climbs out of the working directory with '..'; "
            "use an absolute path inside the image"
        )
    return dst


def _describe(path: Path) -> str:
    if path == Path(path.anchor):
        return "the filesystem root"
    return f"under {next(v for v in _VIRTUAL if path.is_relative_to(v))} (a virtual filesystem)"

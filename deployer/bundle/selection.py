"""Which files a bundle holds, for each copy style (DESIGN.md, "Copy styles").

Every selected path is a POSIX path relative to root_dir whose real location is inside root_dir:
a symlink to a file inside the project is kept (its content is bundled), a symlink that resolves
outside the project, or a symlink loop, is an error naming the link. The same holds for a module
imported through such a link (discovery reports the path it was imported by).

A file name that is not valid UTF-8 is refused, naming the file: the plan, the JSON report, the step
summary and Flyte's runtime all carry names as text, and such a name cannot be a Python module, so it
is a data file whose name a tool mis-encoded. Renaming it (or `.flyteignore`) is the user's fix; a
name shown one way and stored another would be a surprise in every one of those places.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deployer.bundle.ignore import IgnoreRules
from deployer.errors import BundleError
from deployer.models import CopyStyle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    files: tuple[str, ...]
    """POSIX paths relative to root_dir, sorted."""
    warnings: tuple[str, ...] = ()
    """Paths skipped for a reason the user should hear about (sockets, devices, dangling links)."""


class _Project:
    """root_dir as given and as resolved, plus the warnings collected while selecting."""

    def __init__(self, root_dir: Path) -> None:
        self.root = Path(os.path.abspath(root_dir))
        if not self.root.is_dir():
            raise BundleError(f"root_dir {root_dir} is not a directory")
        self.real = os.path.realpath(self.root)
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        # Not log.warning: callers show `Selection.warnings` themselves, and logging's fallback
        # handler would print each one a second time.
        log.info(message)
        self.warnings.append(message)

    def contains(self, real_path: str) -> bool:
        return real_path == self.real or real_path.startswith(self.real.rstrip(os.sep) + os.sep)

    def resolve_link(self, rel: str) -> str | None:
        """Real location of `rel`, which involves a symlink; None when it dangles inside the project."""
        path = os.path.join(self.root, rel)
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BundleError(f"symlink loop at {rel} (under {self.root})") from exc
            if not isinstance(exc, FileNotFoundError):
                raise BundleError(f"cannot read symlink {rel}: {exc.strerror}") from exc
            real = os.path.realpath(path)
            if not self.contains(real):
                raise BundleError(f"symlink {rel} points outside root_dir {self.root} (to {real})") from exc
            self.warn(f"skipped {rel}: dangling symlink to {real}")
            return None
        if not self.contains(real):
            raise BundleError(f"symlink {rel} points outside root_dir {self.root} (to {real})")
        return real

    def real_path(self, rel: str) -> str | None:
        """Real location of `rel` checked to be inside the project; None if it does not exist."""
        path = os.path.join(self.root, rel)
        if not os.path.lexists(path):
            return None
        # A link anywhere on the path (not only the last component) could lead outside.
        real = os.path.realpath(path)
        if real == os.path.join(self.real, rel) and not os.path.islink(path):
            return real
        return self.resolve_link(rel)

    def check_file(self, rel: str) -> bool:
        """Whether `rel` is a regular file (through in-project links); errors for escaping links."""
        real = self.real_path(rel)
        if real is None:
            return False
        try:
            st = os.stat(real)
        except OSError as exc:
            raise BundleError(f"cannot read {rel}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode):
            return True
        if not stat.S_ISDIR(st.st_mode):
            self.warn(f"skipped {rel}: not a regular file (socket, device or pipe)")
        return False


def _walk(project: _Project, rules: IgnoreRules, start: str) -> Iterator[str]:
    """Regular files under `start` (relative to root), following in-project directory links."""
    # Each stack item: the relative directory and the real paths of the directories above it,
    # which is what a link must not point back into (that would loop forever).
    stack: list[tuple[str, frozenset[str]]] = [(start, frozenset())]
    while stack:
        rel_dir, above = stack.pop()
        real_dir = os.path.realpath(os.path.join(project.root, rel_dir))
        above = above | {real_dir}
        try:
            entries = sorted(os.scandir(os.path.join(project.root, rel_dir)), key=lambda e: e.name)
        except OSError as exc:
            raise BundleError(f"cannot list {rel_dir or '.'} under {project.root}: {exc.strerror}") from exc
        subdirs: list[tuple[str, frozenset[str]]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():
                target = project.resolve_link(rel)
                if target is None:
                    continue
                is_dir = os.path.isdir(target)
                if rules.ignored(rel, is_dir=is_dir):
                    continue
                if is_dir:
                    if target in above:
                        raise BundleError(f"symlink loop at {rel}: it points back to {target}")
                    subdirs.append((rel, above))
                elif os.path.isfile(target):
                    yield rel
                else:
                    project.warn(f"skipped {rel}: not a regular file (socket, device or pipe)")
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if rules.ignored(rel, is_dir=is_dir):
                continue
            if is_dir:
                subdirs.append((rel, above))
            elif entry.is_file(follow_symlinks=False):
                yield rel
            else:
                project.warn(f"skipped {rel}: not a regular file (socket, device or pipe)")
        stack.extend(reversed(subdirs))


def _relative(project: _Project, path: Path) -> str | None:
    """`path` relative to root_dir (lexically or after resolving), or None when outside."""
    absolute = os.path.abspath(path)
    for base in (str(project.root), project.real):
        if absolute == base:
            return None
        prefix = base.rstrip(os.sep) + os.sep
        if absolute.startswith(prefix):
            return Path(absolute[len(prefix) :]).as_posix()
    return None


def _loaded(project: _Project, rules: IgnoreRules, loaded_files: Sequence[Path]) -> set[str]:
    selected: set[str] = set()
    for path in loaded_files:
        rel = _relative(project, path)
        if rel is None or rules.excluded(rel):
            continue
        if project.check_file(rel):
            selected.add(rel)
    return selected


def _included(project: _Project, rules: IgnoreRules, includes: Sequence[str]) -> set[str]:
    """Files named by `Environment.include`: files as named, directories and globs filtered."""
    selected: set[str] = set()
    for entry in includes:
        is_absolute = Path(entry).is_absolute()
        path = Path(entry) if is_absolute else project.root / entry
        rel = _relative(project, path)
        at_root = os.path.abspath(path) in (str(project.root), project.real)
        if rel is None and not at_root:
            raise BundleError(f"include {entry!r} is outside root_dir {project.root}")
        if at_root or (rel is not None and os.path.isdir(path)):
            if rel is not None and project.real_path(rel) is None:
                continue
            selected.update(_walk(project, rules, rel or ""))
        elif os.path.lexists(path):
            if rel is None or not project.check_file(rel):
                raise BundleError(f"include {entry!r} is not a regular file")
            selected.add(rel)
        else:
            pattern = entry if is_absolute else os.path.join(glob.escape(str(project.root)), entry)
            matched = (_relative(project, Path(p)) for p in glob.glob(pattern, recursive=True))
            files = {m for m in matched if m and not rules.excluded(m) and project.check_file(m)}
            if not files:
                raise BundleError(f"include {entry!r} matches no file under root_dir {project.root}")
            selected.update(files)
    return selected


def select(
    root_dir: Path, copy_style: CopyStyle, loaded_files: Sequence[Path], includes: Sequence[str]
) -> Selection | None:
    """The files a bundle of `root_dir` holds; None for copy style `none` (no bundle)."""
    style = copy_style.resolved()
    if style is CopyStyle.none:
        return None
    project = _Project(root_dir)
    if style is CopyStyle.all:
        rules = IgnoreRules(project.root, standard=True, gitignore=True)
        files = set(_walk(project, rules, ""))
    else:
        files = _loaded(project, IgnoreRules(project.root, standard=False, gitignore=False), loaded_files)
    # Directories and globs in `include` skip what the standard list and .flyteignore skip.
    files |= _included(project, IgnoreRules(project.root, standard=True, gitignore=False), includes)
    if not files:
        raise BundleError(
            f"nothing to bundle under {project.root} with copy style {style.value}"
            + (": no imported module lives under root_dir" if style is CopyStyle.loaded_modules else "")
        )
    _check_names(files)
    return Selection(files=tuple(sorted(files)), warnings=tuple(project.warnings))


def _check_names(files: set[str]) -> None:
    for name in sorted(files):
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                raise BundleError(
                    f"{shown}: the file name is not valid UTF-8; rename it or leave it out with .flyteignore"
                ) from None

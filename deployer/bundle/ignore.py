"""Which paths never enter a bundle: the standard ignores and `.gitignore`/`.flyteignore` files.

Ignore files follow git's rules: a pattern is relative to the directory holding its file, a deeper
file overrides a shallower one, `!` re-includes, and nothing below an excluded directory can be
re-included (the walker never enters it). Ignore files in directories above `root_dir`, up to the
repository root, apply too, as they do for git.

`.gitignore` and `.flyteignore` are separate chains: a path is left out when either excludes it,
so `!` in one never re-includes what the other excludes.

Patterns are pathspec's gitwildmatch regexes run by RE2, whose matching time is linear in the path's
length whatever the pattern (Python's `re` backtracks: `*a*a*a*…b` against a long name takes seconds
per path, and grows geometrically with every `*a`). RE2 reads UTF-8 only, so a name that is not
valid UTF-8 is matched with U+FFFD in place of each undecodable byte.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import pathspec

from deployer.errors import BundleError

GITIGNORE = ".gitignore"
FLYTEIGNORE = ".flyteignore"

# Matched by name at any depth. Directories holding `pyvenv.cfg` are virtualenvs whatever their name.
STANDARD_IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".cache",
        ".idea",
        ".ipynb_checkpoints",
        "dist",
        "build",
        ".flyte-deploy",
    }
)
STANDARD_IGNORED_DIR_SUFFIXES = (".egg-info",)
STANDARD_IGNORED_FILE_SUFFIXES = (".pyc", ".pyo", ".egg", ".whl", ".log")
# `.git` is a file in submodules and linked worktrees: it points at the repository, it is never code.
STANDARD_IGNORED_FILES = frozenset({".env", ".DS_Store", ".git"})


BACKEND = "re2"


def _matchable(text: str) -> str:
    """`text` as RE2 can take it: undecodable bytes (surrogate escapes) become U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def standard_ignored(name: str, *, is_dir: bool, path: Path | None = None) -> bool:
    """The built-in list (DESIGN.md): VCS and tool caches, bytecode, virtualenvs, build output."""
    if is_dir:
        if name in STANDARD_IGNORED_DIRS or name.endswith(STANDARD_IGNORED_DIR_SUFFIXES):
            return True
        return path is not None and (path / "pyvenv.cfg").is_file()
    return name in STANDARD_IGNORED_FILES or name.endswith(STANDARD_IGNORED_FILE_SUFFIXES)


def repository_root(root_dir: Path) -> Path | None:
    """The nearest directory at or above root_dir holding `.git` (a dir, or a file for worktrees)."""
    for candidate in (root_dir, *root_dir.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


class IgnoreChain:
    """One kind of ignore file (e.g. `.gitignore`) at every level from the repository root down."""

    def __init__(self, root_dir: Path, file_name: str) -> None:
        self.root_dir = root_dir
        self.file_name = file_name
        # Directory (POSIX, relative to root_dir, "" for root) → compiled patterns, or None if absent.
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}
        self._levels: dict[str, list[tuple[str, pathspec.GitIgnoreSpec]]] = {}
        # Ancestors of root_dir with an ignore file: (prefix to prepend to root-relative paths, spec).
        self._above: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        repo = repository_root(root_dir)
        if repo is not None and repo != root_dir:
            below = root_dir.relative_to(repo).parts
            for depth in range(len(below)):
                base = repo.joinpath(*below[:depth])
                spec = self._load(base / file_name)
                if spec is not None:
                    self._above.append(("/".join(below[depth:]) + "/", spec))

    def _load(self, file: Path) -> pathspec.GitIgnoreSpec | None:
        if not file.is_file():
            return None
        try:
            lines = file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError as exc:
            raise BundleError(f"cannot read ignore file {file}: {exc.strerror}") from exc
        try:
            spec = pathspec.GitIgnoreSpec.from_lines([_matchable(line) for line in lines], backend=BACKEND)
        except (ValueError, pathspec.util.RecursionError) as exc:
            raise BundleError(f"bad pattern in {file}: {exc}") from exc
        return spec if spec.patterns else None

    def spec_at(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            self._specs[rel_dir] = self._load(self.root_dir / rel_dir / self.file_name)
        return self._specs[rel_dir]

    def levels(self, rel_dir: str) -> list[tuple[str, pathspec.GitIgnoreSpec]]:
        """Ignore files that apply inside `rel_dir`, shallowest first."""
        if rel_dir not in self._levels:
            outer = self.levels(posixpath.dirname(rel_dir)) if rel_dir else self._above
            spec = self.spec_at(rel_dir)
            self._levels[rel_dir] = [*outer, (rel_dir, spec)] if spec is not None else outer
        return self._levels[rel_dir]

    def ignored(self, rel: str, *, is_dir: bool) -> bool:
        """Whether `rel` itself matches; its parent directories are assumed to be kept."""
        suffix = "/" if is_dir else ""
        # The deepest ignore file with an opinion decides.
        for base, spec in reversed(self.levels(posixpath.dirname(rel))):
            # Patterns are relative to their file's directory; a base ending in "/" is above root_dir.
            subject = base + rel if base.endswith("/") or not base else rel[len(base) + 1 :]
            result = spec.check_file(_matchable(subject + suffix)).include
            if result is not None:
                return result
        return False


class IgnoreRules:
    """The rules one selection applies: standard names, and the chosen ignore-file chains."""

    def __init__(self, root_dir: Path, *, standard: bool, gitignore: bool, flyteignore: bool = True) -> None:
        self.root_dir = root_dir
        self.standard = standard
        self._dirs: dict[str, bool] = {}
        self.chains = [
            IgnoreChain(root_dir, name)
            for name, wanted in ((GITIGNORE, gitignore), (FLYTEIGNORE, flyteignore))
            if wanted
        ]

    def ignored(self, rel: str, *, is_dir: bool) -> bool:
        """Whether `rel` itself is left out (the walker has already kept its parents)."""
        if self.standard:
            path = self.root_dir / rel if is_dir else None
            if standard_ignored(posixpath.basename(rel), is_dir=is_dir, path=path):
                return True
        return any(chain.ignored(rel, is_dir=is_dir) for chain in self.chains)

    def excluded(self, rel: str) -> bool:
        """Whether `rel` (a file) or any directory above it is left out."""
        return self._dir_excluded(posixpath.dirname(rel)) or self.ignored(rel, is_dir=False)

    def _dir_excluded(self, rel_dir: str) -> bool:
        if not rel_dir:
            return False
        if rel_dir not in self._dirs:
            self._dirs[rel_dir] = self._dir_excluded(posixpath.dirname(rel_dir)) or self.ignored(
                rel_dir, is_dir=True
            )
        return self._dirs[rel_dir]

"""What a uv project needs besides its own pyproject.toml: its workspace and local path packages.

`uv sync` in an image only works when every local package it resolves is there too: the workspace
root's pyproject.toml (a member is synced as part of its workspace), the lock at the workspace root,
every member, and every `[tool.uv.sources]` `path = ...` package (editable or not), transitively.
This module finds them on the host, read from the pyproject files alone (no uv needed on the host),
so the renderer can lay them out in the image exactly as they sit relative to each other.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import BuildError


@dataclass(frozen=True)
class UvLayout:
    project: Path
    """The directory of the pyproject.toml the layer names."""
    root: Path
    """The workspace root (the project itself when it is no workspace member)."""
    packages: tuple[Path, ...]
    """Local packages besides the project: workspace members and path sources (directories or
    wheel/sdist files), sorted."""
    lock: Path | None
    """The lock uv will read: the layer's, else the workspace root's."""

    @property
    def anchor(self) -> Path:
        """The deepest directory holding all of them: the layout is kept relative to it."""
        paths = [self.project, self.root, *(p if p.is_dir() else p.parent for p in self.packages)]
        return Path(os.path.commonpath([str(p) for p in paths]))

    @property
    def simple(self) -> bool:
        """No workspace and no local packages: just the project."""
        return self.root == self.project and not self.packages


def uv_layout(pyproject: Path, uvlock: Path | None, *, limit: Path) -> UvLayout:
    """The layout of the uv project at `pyproject`; the workspace root is looked for up to `limit`."""
    project = pyproject.parent.resolve()
    root = _workspace_root(project, limit.resolve())
    packages: set[Path] = set()
    if root != project or _workspace(root) is not None:
        packages |= set(_members(root))
    pending = [project, root, *packages]
    seen: set[Path] = set()
    while pending:
        directory = pending.pop()
        if directory in seen or not (directory / "pyproject.toml").is_file():
            continue
        seen.add(directory)
        for path in _path_sources(directory):
            if path not in packages:
                packages.add(path)
                if path.is_dir():
                    pending.append(path)
    packages.discard(project)
    lock = uvlock.resolve() if uvlock is not None else None
    if lock is None and (root / "uv.lock").is_file():
        lock = root / "uv.lock"
    return UvLayout(project=project, root=root, packages=tuple(sorted(packages)), lock=lock)


def _read(pyproject: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {pyproject}: {exc}") from exc


def _uv_table(directory: Path) -> dict[str, Any]:
    table = _read(directory / "pyproject.toml").get("tool", {}).get("uv", {})
    return table if isinstance(table, dict) else {}


def _workspace(directory: Path) -> dict[str, Any] | None:
    if not (directory / "pyproject.toml").is_file():
        return None
    workspace = _uv_table(directory).get("workspace")
    return workspace if isinstance(workspace, dict) else None


def _members(root: Path) -> list[Path]:
    workspace = _workspace(root) or {}
    excluded = {p.resolve() for pattern in workspace.get("exclude", ()) for p in root.glob(pattern)}
    members = {
        p.resolve()
        for pattern in workspace.get("members", ())
        for p in root.glob(pattern)
        if p.is_dir() and (p / "pyproject.toml").is_file()
    }
    return sorted(members - excluded)


def _workspace_root(project: Path, limit: Path) -> Path:
    for candidate in (project, *project.parents):
        if not candidate.is_relative_to(limit):
            break
        if _workspace(candidate) is not None and (candidate == project or project in _members(candidate)):
            return candidate
    return project


def _path_sources(directory: Path) -> list[Path]:
    sources = _uv_table(directory).get("sources", {})
    found: list[Path] = []
    for entry in sources.values() if isinstance(sources, dict) else ():
        for source in entry if isinstance(entry, list) else [entry]:
            if isinstance(source, dict) and isinstance(source.get("path"), str):
                path = (directory / source["path"]).resolve()
                if not path.exists():
                    raise BuildError(
                        f"{directory / 'pyproject.toml'}: path source {source['path']} does not exist"
                    )
                found.append(path)
    return found

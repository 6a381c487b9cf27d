"""Sample Flyte projects (see README.md). `copy_project` puts one into a test's own directory, so
importing it never writes `__pycache__` into the source tree."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECTS_DIR = Path(__file__).resolve().parent
NAMES = (
    "flat",
    "src_layout",
    "monorepo",
    "chain",
    "by_domain",
    "hybrid",
    "ref_image",
    "scheduled",
    "shapes",
)


def copy_project(name: str, dest: Path) -> Path:
    """Copy sample project `name` into `dest` (created if needed) and return `dest`."""
    if name not in NAMES:
        raise ValueError(f"unknown sample project {name!r}; known: {', '.join(NAMES)}")
    shutil.copytree(
        PROJECTS_DIR / name, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest

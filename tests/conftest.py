"""Session fixtures. Each area's fixtures live in `tests/fixtures/<area>.py`; all are loaded here."""

from __future__ import annotations

import pathlib

import pytest

# Fixture modules import each other's helpers; rewrite their asserts before any of them is imported.
pytest.register_assert_rewrite("tests.fixtures")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if not p.name.startswith("_")
)

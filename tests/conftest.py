"""Session fixtures. Each area's fixtures live in `tests/fixtures/<area>.py`; all are loaded here."""

from __future__ import annotations

import pathlib

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if not p.name.startswith("_")
)

"""How core stages report what they are doing, without printing.

Core modules never print and never import rich: they take a `Progress` and call it. The CLI renders it
on stderr (`deployer.output.ConsoleProgress`), the GitHub Action as `::group::` blocks and log lines
(`entrypoint.github_env`), tests record it (`RecordingProgress`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

Advance = Callable[[int], None]
"""Called with the number of units (bytes, steps) done since the last call."""


class Progress(Protocol):
    def info(self, message: str) -> None:
        """One line about what happened ("bundle: uploaded ...")."""

    def warning(self, message: str) -> None:
        """Something the user should act on, that does not stop the run."""

    def group(self, title: str) -> contextlib.AbstractContextManager[None]:
        """A named stretch of work whose lines belong together (a CI log group)."""

    def bar(self, label: str, total: int | None) -> contextlib.AbstractContextManager[Advance]:
        """A long transfer or build: `total` units (None: unknown); the callable advances it."""


class NullProgress:
    """Reports nothing: the default for library calls."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Advance]:
        yield _ignore


class RecordingProgress(NullProgress):
    """Keeps every line, for tests and for reports that quote what happened."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.lines.append(f"[{title}]")
        yield


def _ignore(_units: int) -> None:
    pass


QUIET: Progress = NullProgress()

"""The runner's side of a container action: file commands and workflow commands.

File commands: `$GITHUB_OUTPUT` (outputs, heredoc form so values may span lines) and
`$GITHUB_STEP_SUMMARY` (Markdown, appended). Workflow commands go to stdout: `::add-mask::`,
`::group::`/`::endgroup::`, `::error file=...,line=...,title=...::message`, `::warning`, `::notice`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

WORKSPACE = "/github/workspace"


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


class GitHubEnv:
    def __init__(self, environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.stream = stream or sys.stdout
        self.workspace = Path(self.environ.get("GITHUB_WORKSPACE") or WORKSPACE)
        self._unwritable: set[str] = set()

    # ------------------------------------------------------------------ workflow commands
    def command(self, name: str, message: str = "", **properties: str | int | None) -> None:
        props = ",".join(
            f"{k}={escape_property(str(v))}" for k, v in properties.items() if v not in (None, "")
        )
        self.stream.write(f"::{name}{' ' + props if props else ''}::{escape_data(message)}\n")
        self.stream.flush()

    def mask(self, secret: str | None) -> None:
        """Hide a secret in every later log line. Each line of a multi-line secret is masked alone,
        because the runner matches masks line by line."""
        if not secret:
            return
        for line in {secret, *secret.splitlines()}:
            if line.strip():
                self.command("add-mask", line)

    def error(
        self, message: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self.command("error", message, file=self.relative(file), line=line, title=title)

    def warning(
        self, message: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        self.command("warning", message, file=self.relative(file), line=line, title=title)

    def notice(self, message: str, *, title: str | None = None) -> None:
        self.command("notice", message, title=title)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.command("group", title)
        try:
            yield
        finally:
            sys.stderr.flush()
            self.command("endgroup")

    def relative(self, file: str | None) -> str | None:
        """Annotations name files relative to the repository root, as GitHub shows them."""
        if not file:
            return None
        path = Path(file)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                return path.relative_to(self.workspace).as_posix()
        return path.as_posix()

    def progress(self) -> ActionProgress:
        return ActionProgress(self)

    # ------------------------------------------------------------------ file commands
    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        text = "".join(heredoc(key, value) for key, value in outputs.items())
        if not self._append("GITHUB_OUTPUT", text, "outputs are printed to the log instead"):
            for key, value in outputs.items():
                self.stream.write(f"output {key}={value}\n")

    def append_summary(self, markdown: str) -> None:
        self._append(
            "GITHUB_STEP_SUMMARY", markdown if markdown.endswith("\n") else markdown + "\n", "no step summary"
        )

    def _append(self, variable: str, text: str, fallback: str) -> bool:
        """Append to the file a file command variable names. A file that cannot be written (the runner
        did not mount /github/file_commands) is one warning, never an exception: this runs while a
        failure is being reported, and must not replace it with its own."""
        target = self.environ.get(variable)
        if not target or variable in self._unwritable:
            return False
        try:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            self._unwritable.add(variable)
            self.warning(f"{variable} {target}: cannot write it ({exc.strerror or exc}); {fallback}")
            return False
        return True


def heredoc(key: str, value: str) -> str:
    """`key<<DELIM` / value / `DELIM`, with a delimiter that cannot occur in the value."""
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return f"{key}<<{delimiter}\n{value}\n{delimiter}\n"


class ActionProgress:
    """`deployer.progress.Progress` for a CI log: lines on the workflow-command stream (so they stay inside
    their `::group::`), no bars (a log is not a terminal). Warnings are log lines here: the run's report
    carries them to the step summary."""

    def __init__(self, gh: GitHubEnv) -> None:
        self._gh = gh

    def info(self, message: str) -> None:
        self._gh.stream.write(message + "\n")
        self._gh.stream.flush()

    def warning(self, message: str) -> None:
        self.info(f"warning: {message}")

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        with self._gh.group(title):
            yield

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        self.info(label)
        yield lambda _n: None

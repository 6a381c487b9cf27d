"""Why a task failed, from the runtime's `error.pb` and its log: the task's own exception as one line,
and the traceback for `--verbose`.

Flyte's runtime writes the exception type as the error code and its message as the message. Some messages
are themselves traceback-shaped (the runtime wraps a failed import in "Full traceback: ..." and a listing
of the working directory): the exception line of the last traceback is the one that says what happened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flyteidl2.core import execution_pb2

from deployer.errors import RunError

_TRACEBACK_HEADER = "Traceback (most recent call last):"
_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")


@dataclass(frozen=True)
class Failure:
    code: str
    """The exception type (`ValueError`), as the runtime names it."""
    summary: str
    """`ValueError: bad value`: one line."""
    message: str = ""
    """The whole message, as recorded."""
    traceback: str | None = None
    missing_module: str | None = None
    """The module a `ModuleNotFoundError` names."""


def read_failure(error_pb: bytes, log: str) -> Failure:
    """The failure `error.pb` records; the traceback from its message, else from the task's log."""
    document = execution_pb2.ErrorDocument()
    try:
        document.ParseFromString(error_pb)
    except Exception as exc:
        raise RunError(f"the task failed and its error.pb cannot be read: {exc}") from exc
    code, message = document.error.code, document.error.message
    in_message = last_traceback(message)
    if in_message is not None:
        line = _exception_line(in_message) or code
    else:
        line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    summary = _with_code(code, line)
    traceback = in_message or _matching_traceback(log, code)
    module = _NO_MODULE.search(summary) if code in ("ModuleNotFoundError", "ImportError") else None
    return Failure(
        code=code,
        summary=summary,
        message=message,
        traceback=traceback,
        missing_module=module["module"] if module else None,
    )


def crash_summary(log: str) -> str | None:
    """The exception line of the last traceback in a log, for a runtime that died without error.pb."""
    traceback = last_traceback(log)
    return _exception_line(traceback) if traceback else None


def last_traceback(text: str) -> str | None:
    """The last Python traceback in `text`: its header, the frames and the exception line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == _TRACEBACK_HEADER]
    if not starts:
        return None
    block = [lines[starts[-1]].strip()]
    for line in lines[starts[-1] + 1 :]:
        block.append(line)
        if line and not line[0].isspace():  # the first unindented line after the frames: the exception
            break
    return "\n".join(block)


def _matching_traceback(log: str, code: str) -> str | None:
    traceback = last_traceback(log)
    if traceback is None or not code:
        return traceback
    exception = _exception_line(traceback) or ""
    return traceback if exception.split(":", 1)[0].rsplit(".", 1)[-1] == code else None


def _exception_line(traceback: str) -> str | None:
    last = traceback.splitlines()[-1].strip()
    return last if last and last != _TRACEBACK_HEADER and not last.startswith("File ") else None


def _with_code(code: str, line: str) -> str:
    if not line:
        return code or "an unknown error (no message)"
    if not code or line.split(":", 1)[0].rsplit(".", 1)[-1] == code:
        return line
    return f"{code}: {line}"

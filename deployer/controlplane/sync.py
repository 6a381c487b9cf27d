"""Calling the flyte SDK's coroutines from our synchronous stages, and its errors as one line."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run an SDK coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def one_line(exc: BaseException) -> str:
    """An exception's message and its cause's, on one line."""
    reason = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__) not in reason:
        reason = f"{reason} ({exc.__cause__})"
    return " ".join(reason.split())

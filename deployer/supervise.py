"""Running a command in a child process, so that user code cannot make a run look like a success.

Importing the user's modules runs their code. A module that calls `os._exit(0)`, is killed by a signal, or
never finishes importing would otherwise end the deploy with exit 0 and no output, or hang the CI job. The
parent process watches the child through a pipe: the child says which file it is importing and, at the
very end, the exit code it chose. A child that ends without saying so, or stays in one import past the
timeout, is reported as one line naming the file, with a nonzero exit.

While a module is imported, anything it prints goes to stderr (file descriptor level, so C extensions are
covered too): `--json` on stdout stays one JSON document.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_CHANNEL: int | None = None
"""Write end of the pipe to the parent, in a supervised child."""


@dataclass(frozen=True)
class Finished:
    code: int
    problem: str | None = None
    """Why the run failed without reporting it itself (killed, exited while importing, timed out)."""


def supervised(work: Callable[[], int], *, import_timeout_s: float, timeout_setting: str) -> Finished:
    """Run `work` in a forked child and wait for it; the child's own exit code when it reports one.
    `timeout_setting` names where the import timeout is configured, for the message."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _die_with(parent)
        _restart_threads()
        _child(work, write_end)
    os.close(write_end)
    forward = _forward_signals(pid)
    try:
        return _watch(pid, read_end, import_timeout_s, timeout_setting)
    finally:
        forward()
        os.close(read_end)


@contextlib.contextmanager
def importing(what: str) -> Iterator[None]:
    """Around the import of user code: tell the parent, and send the code's prints to stderr."""
    _send(f"import {what}")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _send("imported")


# ---------------------------------------------------------------------------------------------- child


def _child(work: Callable[[], int], channel: int) -> None:
    global _CHANNEL
    _CHANNEL = channel
    code = 1
    try:
        code = work()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        # A bug of ours: os._exit below would end the child before Python printed it.
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _send(f"exit {code}")
        os._exit(code)


def _restart_threads() -> None:
    """A fork copies memory, not threads: whatever the parent imported before forking (the flyte SDK, read
    for the settings' config file, among others) has its state here but not the threads serving it. The
    SDK's sync-over-async loop is one: without its thread, every `.aio` call the child makes (app
    translation among them) waits forever. Every entry point (CLI, serve, the Action) forks here, so it is
    restarted here, before any of the child's work."""
    if "flyte.syncify" in sys.modules:  # never import the SDK just for this
        from deployer.sdk import restart_background_loop

        restart_background_loop()


def _die_with(parent: int) -> None:
    """Whoever kills the run kills the parent (the pid they see): the child must not live on and finish
    a deploy nobody is watching any more (Linux: PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _send(line: str) -> None:
    if _CHANNEL is not None:
        with contextlib.suppress(OSError):
            os.write(_CHANNEL, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------- parent


def _watch(pid: int, channel: int, import_timeout_s: float, timeout_setting: str) -> Finished:
    buffer = b""
    current: str | None = None
    since = 0.0
    reported: int | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(channel, selectors.EVENT_READ)
        while True:
            wait = max(0.0, since + import_timeout_s - time.monotonic()) if current else None
            if not selector.select(wait):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Finished(
                    1,
                    f"importing {current} did not finish within {import_timeout_s:g} s (an endless loop or a "
                    f"blocking call at import time?); nothing was deployed. Raise {timeout_setting} if "
                    "importing it really takes that long",
                )
            chunk = os.read(channel, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if line.startswith("import "):
                    current, since = line.removeprefix("import "), time.monotonic()
                elif line == "imported":
                    current = None
                elif line.startswith("exit "):
                    reported = int(line.removeprefix("exit "))
    _, status = os.waitpid(pid, 0)
    if reported is not None:
        return Finished(reported)
    return Finished(1, _ended_early(status, current))


def _ended_early(status: int, importing_now: str | None) -> str:
    """Why a child ended without reporting: a signal, or an exit from inside user code."""
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        if importing_now:
            return f"the run was killed by {name} while importing {importing_now}; nothing was deployed"
        return f"the run was killed by {name} before it finished; the log above says what was done"
    code = os.WEXITSTATUS(status)
    if importing_now:
        return (
            f"importing {importing_now} ended the process with exit code {code} (os._exit?); "
            "nothing was deployed"
        )
    return f"the run ended with exit code {code} before it finished; the log above says what was done"


def _forward_signals(pid: int) -> Callable[[], None]:
    """SIGTERM (a cancelled CI job) goes to the child too; SIGINT reaches both from the terminal anyway."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore

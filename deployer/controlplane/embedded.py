"""The embedded control plane, started in-process for one deploy and stopped after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskStore


@contextlib.contextmanager
def embedded_control_plane(state_dir: Path) -> Iterator[str]:
    """Serve the control plane whose state lives in `state_dir` on a free 127.0.0.1 port; yield its
    endpoint URL (`http://127.0.0.1:PORT`, plain HTTP) and stop it on exit.

    Other processes may use the same `state_dir` at the same time (SQLite WAL)."""
    server = ControlPlaneServer(TaskStore(state_dir), "127.0.0.1", 0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()

"""`EmbeddedControlPlane`: the control plane's own service handlers, called in-process.

The same services `flyte-deploy serve` exposes over HTTP (TaskService, ProjectService, DataProxyService),
over the SQLite state in `state_dir`, without a socket: a one-shot deploy with no endpoint needs no
server. Other processes may use the same state dir at the same time (SQLite WAL).

Uploads: the data proxy keeps them under `STATE_DIR/bundles` and, with no HTTP server to PUT to, hands
out the object's own `file://` URL, which the client writes (see `blobs.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from deployer.controlplane.base import ControlPlane, DataProxyCalls, ProjectCalls, TaskCalls
from deployer.controlplane.services import Handlers
from deployer.controlplane.store import TaskStore


class _Bound:
    """A handler's `(request, ctx)` methods as `request -> response` (no handler reads the context)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._handler, method)
        return lambda request: rpc(request, None)


class _InProcess:
    """A handler's `(request, ctx)` methods in the request-in, response-out shape `ControlPlane` calls;
    the handlers read nothing from the context of an in-process call (it is None)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        call = getattr(self._handler, method)
        return lambda request: call(request, None)


class EmbeddedControlPlane(ControlPlane):
    one_shot = True
    """A plane private to this machine's state dir (see `pipeline`: it creates the project it is asked
    for, and says so, where a shared plane refuses)."""

    def __init__(self, state_dir: Path) -> None:
        self.store = TaskStore(state_dir)
        super().__init__(f"embedded ({Path(state_dir)})", attempts=1)
        self.handlers = Handlers.over(self.store)
        self._calls = _InProcess(self.handlers.tasks)

    @property
    def _tasks(self) -> TaskCalls:
        return cast(TaskCalls, self._calls)

    @property
    def _projects(self) -> ProjectCalls:
        return cast(ProjectCalls, _InProcess(self.handlers.projects))

    def _dataproxy(self, project: str, domain: str, org: str) -> DataProxyCalls:
        return cast(DataProxyCalls, _InProcess(self.handlers.dataproxy))

    def close(self) -> None:
        self.store.close()

    @property
    def _previews(self) -> Any:
        return _Bound(self.handlers.previews)

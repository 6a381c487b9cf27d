"""`EmbeddedControlPlane`: the control plane's own service handlers, called in-process.

The same services `flyte-deploy serve` exposes over HTTP (tasks, triggers, apps, projects, the data
proxy, ...), over the SQLite state in `state_dir`, without a socket: a one-shot deploy with no endpoint
needs no server. Other processes may use the same state dir at the same time (SQLite WAL).

Uploads: the data proxy keeps them under `STATE_DIR/bundles` and, with no HTTP server to PUT to, hands
out the object's own `file://` URL, which the client writes (see `blobs.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from deployer.controlplane.base import (
    AppCalls,
    ClusterCalls,
    ControlPlane,
    DataProxyCalls,
    ProjectCalls,
    TaskCalls,
    TriggerCalls,
    UploadCalls,
)
from deployer.controlplane.services import Handlers
from deployer.controlplane.store import TaskStore


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

    def __init__(self, state_dir: Path, *, app_url: str | None = None) -> None:
        self.store = TaskStore(state_dir)
        super().__init__(f"embedded ({Path(state_dir)})", attempts=1)
        self.handlers = Handlers.over(self.store, app_url=app_url)

    @property
    def _tasks(self) -> TaskCalls:
        return cast(TaskCalls, _InProcess(self.handlers.tasks))

    @property
    def _projects(self) -> ProjectCalls:
        return cast(ProjectCalls, _InProcess(self.handlers.projects))

    def _dataproxy(self, project: str, domain: str, org: str) -> DataProxyCalls:
        return cast(DataProxyCalls, _InProcess(self.handlers.dataproxy))

    @property
    def _triggers(self) -> TriggerCalls:
        return cast(TriggerCalls, _InProcess(self.handlers.triggers))

    @property
    def _apps(self) -> AppCalls:
        return cast(AppCalls, _InProcess(self.handlers.apps))

    @property
    def _clusters(self) -> ClusterCalls:
        return cast(ClusterCalls, _InProcess(self.handlers.clusters))

    def _uploads_at(self, endpoint: str) -> UploadCalls:
        # One plane, no data-plane clusters: whatever SelectCluster says, uploads are ours.
        return cast(UploadCalls, _InProcess(self.handlers.dataproxy))

    def close(self) -> None:
        self.store.close()

    @property
    def _previews(self) -> Any:
        return _InProcess(self.handlers.previews)

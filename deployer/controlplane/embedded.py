"""`EmbeddedControlPlane`: the control plane's own service handlers, called in-process.

The same `TaskService` that `flyte-deploy serve` exposes over HTTP, over the SQLite state in
`state_dir`, without a socket: a one-shot deploy with no endpoint needs no server. Other processes may
use the same state dir at the same time (SQLite WAL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flyteidl2.task import task_service_pb2 as ts

from deployer.controlplane.base import ControlPlane, TaskCalls
from deployer.controlplane.services import Handlers
from deployer.controlplane.store import TaskStore
from deployer.controlplane.task_service import TaskService


class _Bound:
    """A handler's `(request, ctx)` methods as `request -> response` (no handler reads the context)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._handler, method)
        return lambda request: rpc(request, None)


class _InProcess:
    """The handlers' `(request, ctx)` methods in the `TaskCalls` shape; no handler reads the context."""

    def __init__(self, service: TaskService) -> None:
        self._service = service
        self._ctx: Any = None

    def deploy_task(self, request: ts.DeployTaskRequest) -> ts.DeployTaskResponse:
        return self._service.deploy_task(request, self._ctx)

    def get_task_details(self, request: ts.GetTaskDetailsRequest) -> ts.GetTaskDetailsResponse:
        return self._service.get_task_details(request, self._ctx)

    def list_tasks(self, request: ts.ListTasksRequest) -> ts.ListTasksResponse:
        return self._service.list_tasks(request, self._ctx)

    def list_versions(self, request: ts.ListVersionsRequest) -> ts.ListVersionsResponse:
        return self._service.list_versions(request, self._ctx)


class EmbeddedControlPlane(ControlPlane):
    def __init__(self, state_dir: Path) -> None:
        self.store = TaskStore(state_dir)
        super().__init__(f"embedded ({Path(state_dir)})", attempts=1)
        self.handlers = Handlers.over(self.store)
        self._calls = _InProcess(self.handlers.tasks)

    @property
    def _tasks(self) -> TaskCalls:
        return self._calls

    @property
    def _previews(self) -> Any:
        return _Bound(self.handlers.previews)

"""Which flyteidl2 services the embedded control plane serves, over its state.

`flyte-deploy serve` mounts each one's generated Connect WSGI application under its service path; the
in-process `EmbeddedControlPlane` calls the same handler objects directly. One list, so a service added
here is served both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connectrpc.interceptor import InterceptorSync
from flyteidl2.task.task_service_connect import TaskServiceWSGIApplication

from deployer.controlplane import preview_service
from deployer.controlplane.preview_service import PreviewService
from deployer.controlplane.store import TaskStore
from deployer.controlplane.task_service import TaskService


@dataclass(frozen=True)
class Handlers:
    """The service handler objects, sharing one state."""

    tasks: TaskService
    previews: PreviewService

    @classmethod
    def over(cls, store: TaskStore) -> Handlers:
        return cls(tasks=TaskService(store), previews=PreviewService(store))


def wsgi_apps(handlers: Handlers, interceptors: Iterable[InterceptorSync]) -> dict[str, Any]:
    """{service path prefix: WSGI application} for every service the plane implements."""
    chain = list(interceptors)
    return {
        "/flyteidl2.task.TaskService/": TaskServiceWSGIApplication(handlers.tasks, interceptors=chain),
        f"/{preview_service.SERVICE}/": preview_service.wsgi_app(handlers.previews, chain),
    }

"""Which flyteidl2 services the embedded control plane serves, over its state.

`flyte-deploy serve` mounts each one's generated Connect WSGI application under its service path; the
in-process `EmbeddedControlPlane` calls the same handler objects directly. One list, so a service added
here is served both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectrpc.compression import Compression
from connectrpc.interceptor import InterceptorSync
from flyteidl2.app.app_service_connect import AppServiceWSGIApplication
from flyteidl2.auth.auth_service_connect import AuthMetadataServiceWSGIApplication
from flyteidl2.auth.identity_connect import IdentityServiceWSGIApplication
from flyteidl2.cluster.service_connect import ClusterServiceWSGIApplication
from flyteidl2.dataproxy.dataproxy_service_connect import DataProxyServiceWSGIApplication
from flyteidl2.project.project_service_connect import ProjectServiceWSGIApplication
from flyteidl2.task.task_service_connect import TaskServiceWSGIApplication
from flyteidl2.trigger.trigger_service_connect import TriggerServiceWSGIApplication

from deployer.controlplane import preview_service
from deployer.controlplane.app_service import AppService
from deployer.controlplane.auth import Auth, AuthConfig
from deployer.controlplane.auth_service import AuthMetadataService, IdentityService
from deployer.controlplane.blobs import Blobs, FileBlobs
from deployer.controlplane.cluster_service import ClusterService
from deployer.controlplane.dataproxy_service import DEFAULT_MAX_UPLOAD_BYTES, DataProxyService
from deployer.controlplane.preview_service import PreviewService
from deployer.controlplane.project_service import ProjectService
from deployer.controlplane.store import TaskStore
from deployer.controlplane.task_service import TaskService
from deployer.controlplane.trigger_service import TriggerService

BUNDLES_DIR = "bundles"
"""Default data-proxy storage: `STATE_DIR/bundles` (file storage)."""


@dataclass(frozen=True)
class Handlers:
    """The service handler objects, sharing one state."""

    tasks: TaskService
    previews: PreviewService
    triggers: TriggerService
    apps: AppService

    # -- projects, uploads and auth (the protocol a Flyte client speaks besides TaskService) ----------
    projects: ProjectService
    dataproxy: DataProxyService
    clusters: ClusterService
    auth_metadata: AuthMetadataService
    identity: IdentityService

    @classmethod
    def over(
        cls,
        store: TaskStore,
        *,
        blobs: Blobs | None = None,
        auth: Auth | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        public_url: str | None = None,
        app_url: str | None = None,
    ) -> Handlers:
        """`app_url`: the pattern of the public URL reported for each app (see `AppService`)."""
        blobs = blobs or FileBlobs(Path(store.state_dir) / BUNDLES_DIR)
        return cls(
            tasks=TaskService(store),
            previews=PreviewService(store),
            triggers=TriggerService(store),
            apps=AppService(store, public_url=app_url),
            projects=ProjectService(store),
            dataproxy=DataProxyService(store, blobs, max_upload_bytes=max_upload_bytes, base_url=public_url),
            clusters=ClusterService(),
            auth_metadata=AuthMetadataService(auth or Auth(AuthConfig())),
            identity=IdentityService(),
        )


def wsgi_apps(
    handlers: Handlers,
    interceptors: Iterable[InterceptorSync],
    *,
    read_max_bytes: int | None = None,
    compressions: Iterable[Compression] | None = None,
) -> dict[str, Any]:
    """{service path prefix: WSGI application} for every service the plane implements."""
    chain = list(interceptors)
    options: dict[str, Any] = {"interceptors": chain, "read_max_bytes": read_max_bytes}
    if compressions is not None:
        options["compressions"] = list(compressions)
    return {
        "/flyteidl2.task.TaskService/": TaskServiceWSGIApplication(handlers.tasks, **options),
        "/flyteidl2.project.ProjectService/": ProjectServiceWSGIApplication(handlers.projects, **options),
        "/flyteidl2.dataproxy.DataProxyService/": DataProxyServiceWSGIApplication(
            handlers.dataproxy, **options
        ),
        "/flyteidl2.cluster.ClusterService/": ClusterServiceWSGIApplication(handlers.clusters, **options),
        "/flyteidl2.auth.AuthMetadataService/": AuthMetadataServiceWSGIApplication(
            handlers.auth_metadata, **options
        ),
        "/flyteidl2.auth.IdentityService/": IdentityServiceWSGIApplication(handlers.identity, **options),
        f"/{preview_service.SERVICE}/": preview_service.wsgi_app(handlers.previews, **options),
        "/flyteidl2.trigger.TriggerService/": TriggerServiceWSGIApplication(handlers.triggers, **options),
        "/flyteidl2.app.AppService/": AppServiceWSGIApplication(handlers.apps, **options),
    }

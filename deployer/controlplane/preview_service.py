"""`flyte_deploy.v1.PreviewService`: what our own control plane offers beyond flyteidl2, so a closed pull
request's preview can be removed from `flyte-deploy serve` too.

flyteidl2's TaskService has no delete, so a real Flyte backend keeps a preview's task versions (the
cleanup says so). Our plane serves this one extra procedure, over the Connect protocol like the rest (so
the same interceptors authenticate and log it), with `google.protobuf.Struct` messages:
`DeleteVersions({project, domain, org, prefix}) -> {versions, tasks, images}`. A plane without it answers
UNIMPLEMENTED, which the client reads as "cannot delete".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectrpc.client import ConnectClient, ConnectClientSync
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectWSGIApplication, EndpointSync
from google.protobuf.struct_pb2 import Struct

from deployer.controlplane.store import TaskStore

SERVICE = "flyte_deploy.v1.PreviewService"
DELETE_VERSIONS: MethodInfo[Struct, Struct] = MethodInfo(
    name="DeleteVersions",
    service_name=SERVICE,
    input=Struct,
    output=Struct,
    idempotency_level=IdempotencyLevel.IDEMPOTENT,
)


class PreviewService:
    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def delete_versions(self, request: Struct, ctx: RequestContext[Any, Any]) -> Struct:
        fields = {key: request[key] for key in ("project", "domain", "org", "prefix") if key in request}
        project, domain, prefix = (str(fields.get(k, "")) for k in ("project", "domain", "prefix"))
        if not project or not domain:
            raise ConnectError(Code.INVALID_ARGUMENT, "project and domain are required")
        deleted = self.store.delete_versions(project, domain, prefix, org=str(fields.get("org", "")))
        response = Struct()
        response.update(
            {
                "versions": sorted({t.key.version for t in deleted}),
                "tasks": len(deleted),
                "images": sorted({i for t in deleted if (i := t.spec.task_template.container.image)}),
            }
        )
        return response


class _PreviewWSGIApplication(ConnectWSGIApplication):
    @property
    def path(self) -> str:
        return f"/{SERVICE}"


def wsgi_app(handler: PreviewService, **options: Any) -> ConnectWSGIApplication:
    """The service's WSGI application; `options` as the generated applications take them
    (interceptors, read_max_bytes, compressions)."""
    endpoint = EndpointSync.unary(method=DELETE_VERSIONS, function=handler.delete_versions)
    return _PreviewWSGIApplication(endpoints={f"/{SERVICE}/{DELETE_VERSIONS.name}": endpoint}, **options)


class PreviewServiceClientSync(ConnectClientSync):
    def delete_versions(
        self, request: Struct, *, headers: Mapping[str, str] | None = None, timeout_ms: int | None = None
    ) -> Struct:
        return self.execute_unary(
            request=request, method=DELETE_VERSIONS, headers=headers, timeout_ms=timeout_ms
        )


class PreviewServiceClient(ConnectClient):
    """The async client (what the flyte SDK's sessions build), sibling of the sync one."""

    async def delete_versions(
        self, request: Struct, *, headers: Mapping[str, str] | None = None, timeout_ms: int | None = None
    ) -> Struct:
        return await self.execute_unary(
            request=request, method=DELETE_VERSIONS, headers=headers, timeout_ms=timeout_ms
        )

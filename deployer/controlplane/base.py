"""`ControlPlane`: what a deploy asks of a Flyte 2 control plane, whoever serves it.

Two implementations speak the same flyteidl2 services: `RemoteControlPlane` (ConnectRPC to any endpoint)
and `EmbeddedControlPlane` (the same service handlers called in-process, over the local SQLite state).
Everything both share lives here: immutability of versions (an existing version with a different spec is
a `VersionConflict`), bounded retries while the plane is unreachable, and one clear line per refusal.
Operations a plane may lack (deleting versions: Flyte's TaskService has no delete) raise `Unsupported`.
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.dataproxy import dataproxy_service_pb2 as dp
from flyteidl2.project import project_service_pb2 as ps
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from google.protobuf import duration_pb2

from deployer.controlplane.specs import spec_differences, spec_digest
from deployer.errors import ControlPlaneError, VersionConflict
from deployer.models import Model
from deployer.redact import printable_url, without_secrets

DeployOutcome = Literal["registered", "unchanged"]

_T = TypeVar("_T")
_PAGE = 100
_BULK_PAGE = 1000


class Unsupported(ControlPlaneError):
    """The control plane has no such operation (e.g. deleting task versions)."""


class DeletedVersions(Model):
    """What `delete_versions` removed."""

    versions: tuple[str, ...] = ()
    tasks: int = 0
    images: tuple[str, ...] = ()
    """The container images the deleted tasks ran in (a preview's image repositories)."""


class TaskCalls(Protocol):
    """flyteidl2 TaskService, request in and response out: a Connect client or the handlers themselves."""

    def deploy_task(self, request: ts.DeployTaskRequest) -> ts.DeployTaskResponse: ...

    def get_task_details(self, request: ts.GetTaskDetailsRequest) -> ts.GetTaskDetailsResponse: ...

    def list_tasks(self, request: ts.ListTasksRequest) -> ts.ListTasksResponse: ...

    def list_versions(self, request: ts.ListVersionsRequest) -> ts.ListVersionsResponse: ...


class ProjectCalls(Protocol):
    """flyteidl2 ProjectService, request in and response out."""

    def get_project(self, request: ps.GetProjectRequest) -> ps.GetProjectResponse: ...

    def create_project(self, request: ps.CreateProjectRequest) -> ps.CreateProjectResponse: ...


class DataProxyCalls(Protocol):
    """flyteidl2 DataProxyService's upload call."""

    def create_upload_location(
        self, request: dp.CreateUploadLocationRequest
    ) -> dp.CreateUploadLocationResponse: ...


@dataclass(frozen=True)
class UploadLocation:
    """Where one upload goes: PUT the bytes to `signed_url` (with `headers`); `native_url` names it."""

    signed_url: str
    native_url: str
    headers: dict[str, str] = field(default_factory=dict)


UPLOAD_EXPIRES_IN_S = 900
"""How long a signed upload URL is asked for (Flyte's backend caps it at an hour)."""


class ControlPlane(ABC):
    one_shot = False
    """True for a plane private to this run's state dir (the embedded one), False for a shared one."""
    concurrency = 1
    """How many calls a deploy may have in flight at once."""

    def __init__(self, label: str, *, attempts: int = 4, backoff_s: float = 0.25) -> None:
        self._address = label
        self.label = printable_url(label)
        """How the plane is named in messages and reports: never with credentials."""
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s

    @property
    @abstractmethod
    def _tasks(self) -> TaskCalls: ...

    def close(self) -> None:  # noqa: B027 (most planes hold nothing to release)
        """Release connections."""

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks ------------------------------------------------------------------------------------------

    def deploy_task(self, spec: td.TaskSpec, triggers: Sequence[td.TaskTrigger] = ()) -> DeployOutcome:
        """Register `spec` under the identifier it carries.

        Returns "registered", or "unchanged" when that version exists with an identical spec; raises
        `VersionConflict` when it exists with a different one (versions are immutable)."""
        task_id = _task_id(spec)
        name, version = task_id.name, task_id.version
        request = ts.DeployTaskRequest(task_id=task_id, spec=spec, triggers=list(triggers))
        try:
            self._call(
                f"deploy task {name} version {version}",
                lambda: self._tasks.deploy_task(request),
                tolerate=(Code.ALREADY_EXISTS,),
            )
            return "registered"
        except _Tolerated:
            pass
        existing = self.get_task(task_id.project, task_id.domain, task_id.org, name, version)
        where = f"{task_id.project}/{task_id.domain}"
        if existing is None:
            raise ControlPlaneError(
                f"control plane {self.label} says task {name} version {version} exists in {where}, "
                "but cannot return it"
            )
        if spec_digest(existing.spec) == spec_digest(spec):
            return "unchanged"
        fields = ", ".join(spec_differences(existing.spec, spec)) or "encoding"
        raise VersionConflict(
            f"task {name} version {version} already exists in {where} with a different spec "
            f"(differs in: {fields}); versions are immutable: deploy under a new version"
        )

    def get_task(self, project: str, domain: str, org: str, name: str, version: str) -> td.TaskDetails | None:
        """The deployed task, or None when that task or version does not exist."""
        task_id = td.TaskIdentifier(org=org, project=project, domain=domain, name=name, version=version)
        try:
            response = self._call(
                f"get task {name} version {version}",
                lambda: self._tasks.get_task_details(ts.GetTaskDetailsRequest(task_id=task_id)),
                tolerate=(Code.NOT_FOUND,),
            )
        except _Tolerated:
            return None
        return response.details

    def list_tasks(self, project: str, domain: str, org: str) -> list[td.Task]:
        """The latest version of every task in the project/domain, oldest deploy first."""
        scope = identifier_pb2.ProjectIdentifier(organization=org, name=project, domain=domain)

        def page(token: str) -> tuple[list[td.Task], str]:
            request = ts.ListTasksRequest(
                project_id=scope, request=list_pb2.ListRequest(limit=_PAGE, token=token)
            )
            response = self._tasks.list_tasks(request)
            return list(response.tasks), response.token

        return self._all_pages(f"list tasks of {project}/{domain}", page)

    def list_versions(self, project: str, domain: str, org: str, name: str) -> list[str]:
        """Every deployed version of one task, newest first."""
        task_name = td.TaskName(org=org, project=project, domain=domain, name=name)

        def page(token: str) -> tuple[list[str], str]:
            request = ts.ListVersionsRequest(
                task_name=task_name, request=list_pb2.ListRequest(limit=_PAGE, token=token)
            )
            response = self._tasks.list_versions(request)
            return [v.version for v in response.versions], response.token

        return self._all_pages(f"list versions of task {name}", page)

    def delete_versions(self, project: str, domain: str, org: str, prefix: str) -> DeletedVersions:
        """Delete every task version of the project/domain whose version starts with `prefix` (a
        preview's). Planes that serve `flyte_deploy.v1.PreviewService` can; a Flyte backend cannot."""
        from google.protobuf.struct_pb2 import Struct

        request = Struct()
        request.update({"project": project, "domain": domain, "org": org, "prefix": prefix})
        try:
            response = self._call(
                f"delete the versions {prefix}* of {project}/{domain}",
                lambda: self._previews.delete_versions(request),
                tolerate=(Code.UNIMPLEMENTED, Code.NOT_FOUND),
            )
        except _Tolerated:
            raise Unsupported(
                f"control plane {self.label} cannot delete task versions (flyteidl2 has no delete)"
            ) from None
        return DeletedVersions(
            versions=tuple(str(v) for v in response["versions"]),
            tasks=int(response["tasks"]),
            images=tuple(str(i) for i in response["images"]),
        )

    @property
    def _previews(self) -> Any:
        """The plane's `flyte_deploy.v1.PreviewService` (see `preview_service`)."""
        raise Unsupported(f"control plane {self.label} cannot delete task versions")

    def tasks_at_version(self, project: str, domain: str, org: str, version: str) -> dict[str, td.Task]:
        """Every task the plane holds under `version` in the project/domain, by name: one listing (a
        `version` filter on ListTasks), however many tasks a deploy has."""
        scope = identifier_pb2.ProjectIdentifier(organization=org, name=project, domain=domain)
        exact = list_pb2.Filter(field="version", function=list_pb2.Filter.Function.EQUAL, values=[version])

        def page(token: str) -> tuple[list[td.Task], str]:
            request = ts.ListTasksRequest(
                project_id=scope,
                request=list_pb2.ListRequest(limit=_BULK_PAGE, token=token, filters=[exact]),
            )
            response = self._tasks.list_tasks(request)
            return list(response.tasks), response.token

        found = self._all_pages(f"list tasks of version {version} in {project}/{domain}", page)
        return {t.task_id.name: t for t in found if t.task_id.version == version}

    # -- projects and uploads (ProjectService, DataProxyService) ----------------------------------------

    @property
    def _projects(self) -> ProjectCalls:
        raise Unsupported(f"control plane {self.label} has no ProjectService")

    def _dataproxy(self, project: str, domain: str, org: str) -> DataProxyCalls:
        """The data proxy serving uploads for this project/domain (a plane may route them elsewhere)."""
        raise Unsupported(f"control plane {self.label} has no DataProxyService")

    def has_project(self, project: str, org: str) -> bool | None:
        """Whether the plane has `project`; None when it cannot say (it serves no ProjectService)."""
        request = ps.GetProjectRequest(id=project, org=org)
        try:
            self._call(
                f"look up project {project}",
                lambda: self._projects.get_project(request),
                tolerate=(Code.NOT_FOUND, Code.UNIMPLEMENTED),
                service="ProjectService",
            )
        except _Tolerated as exc:
            cause = exc.__cause__
            return None if isinstance(cause, ConnectError) and cause.code == Code.UNIMPLEMENTED else False
        return True

    def create_project(self, project: str, org: str, *, description: str = "") -> bool:
        """Create `project`; False when it exists already."""
        request = ps.CreateProjectRequest(
            project=ps.Project(id=project, name=project, description=description, org=org)
        )
        try:
            self._call(
                f"create project {project}",
                lambda: self._projects.create_project(request),
                tolerate=(Code.ALREADY_EXISTS,),
                service="ProjectService",
            )
        except _Tolerated:
            return False
        return True

    def upload_location(
        self, *, project: str, domain: str, org: str, filename: str, md5: bytes, size: int, root: str = ""
    ) -> UploadLocation:
        """A signed URL for one upload of `size` bytes with this MD5 (CreateUploadLocation, as `flyte`
        uploads code bundles); the object is stored under `root`/`filename` of the project/domain."""
        expires = duration_pb2.Duration(seconds=UPLOAD_EXPIRES_IN_S)
        request = dp.CreateUploadLocationRequest(
            project=project,
            domain=domain,
            org=org,
            filename=filename,
            filename_root=root,
            content_md5=md5,
            content_length=size,
            expires_in=expires,
            add_content_md5_metadata=True,
        )
        response = self._call(
            f"get an upload location for {filename} in {project}/{domain}",
            lambda: self._dataproxy(project, domain, org).create_upload_location(request),
            service="DataProxyService",
        )
        return UploadLocation(
            signed_url=response.signed_url, native_url=response.native_url, headers=dict(response.headers)
        )

    # -- plumbing ---------------------------------------------------------------------------------------

    def _all_pages(self, what: str, page: Callable[[str], tuple[list[_T], str]]) -> list[_T]:
        items: list[_T] = []
        token = ""
        while True:
            found, token = self._call(what, functools.partial(page, token))
            items.extend(found)
            if not token:
                return items

    def _call(
        self,
        what: str,
        rpc: Callable[[], _T],
        *,
        tolerate: tuple[Code, ...] = (),
        service: str = "TaskService",
    ) -> _T:
        for attempt in range(1, self._attempts + 1):
            try:
                return rpc()
            except ConnectError as exc:
                if exc.code in tolerate:
                    raise _Tolerated from exc
                if exc.code == Code.UNAVAILABLE and attempt < self._attempts:
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
                    continue
                raise self._error(what, exc, attempt, service) from exc
        raise AssertionError("unreachable")

    def _error(self, what: str, exc: ConnectError, attempts: int, service: str) -> ControlPlaneError:
        reason = without_secrets(exc.message or exc.code.name, self._address)
        if exc.code == Code.UNAVAILABLE:
            return ControlPlaneError(
                f"control plane {self.label} is unreachable ({reason}) after {attempts} attempts to {what}"
            )
        if exc.code in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
            return ControlPlaneError(
                f"control plane {self.label} refused to {what}: {exc.code.name}: {reason} "
                "(check the control plane credential: --api-key, or the Flyte config)"
            )
        if exc.code == Code.UNIMPLEMENTED:
            return ControlPlaneError(
                f"{self.label} does not serve flyteidl2 {service} (cannot {what}: {reason}); "
                "is --endpoint a Flyte 2 control plane?"
            )
        return ControlPlaneError(f"control plane {self.label} refused to {what}: {exc.code.name}: {reason}")


class _Tolerated(Exception):
    """An expected Connect error code that the caller turns into a result."""


def _task_id(spec: td.TaskSpec) -> td.TaskIdentifier:
    i = spec.task_template.id
    return td.TaskIdentifier(org=i.org, project=i.project, domain=i.domain, name=i.name, version=i.version)

"""`ControlPlane`: what a deploy asks of a Flyte 2 control plane, whoever serves it.

Two implementations speak the same flyteidl2 services: `RemoteControlPlane` (ConnectRPC to any endpoint)
and `EmbeddedControlPlane` (the same service handlers called in-process, over the local SQLite state).
Everything both share lives here: immutability of versions (an existing version with a different spec is
a `VersionConflict`), bounded retries while the plane is unreachable, and one clear line per refusal.
Operations a plane may lack (deleting versions: Flyte's TaskService has no delete; a plane without
TriggerService or AppService) raise `Unsupported`.

Besides tasks: triggers (listed, read, activated/deactivated and deleted through `TriggerService`; their
inputs offloaded through the data proxy as the flyte SDK does) and apps (created or updated in place
through `AppService`: an identical spec is left alone, another one is the next revision).
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
from flyteidl2.app import app_definition_pb2 as ad
from flyteidl2.app import app_payload_pb2 as ap
from flyteidl2.cluster import payload_pb2 as cluster_pb2
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.dataproxy import dataproxy_service_pb2 as dp
from flyteidl2.project import project_service_pb2 as ps
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from flyteidl2.trigger import trigger_definition_pb2 as tdef
from flyteidl2.trigger import trigger_service_pb2 as tsv
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict

from deployer.controlplane.specs import spec_differences, spec_digest
from deployer.errors import ControlPlaneError, VersionConflict
from deployer.models import Model
from deployer.redact import printable_url, without_secrets

DeployOutcome = Literal["registered", "unchanged"]
AppOutcome = Literal["registered", "updated", "unchanged"]

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


class TriggerCalls(Protocol):
    """flyteidl2 TriggerService, request in and response out."""

    def list_triggers(self, request: tsv.ListTriggersRequest) -> tsv.ListTriggersResponse: ...

    def get_trigger_details(self, request: tsv.GetTriggerDetailsRequest) -> tsv.GetTriggerDetailsResponse: ...

    def get_trigger_revision_history(
        self, request: tsv.GetTriggerRevisionHistoryRequest
    ) -> tsv.GetTriggerRevisionHistoryResponse: ...

    def update_triggers(self, request: tsv.UpdateTriggersRequest) -> tsv.UpdateTriggersResponse: ...

    def delete_triggers(self, request: tsv.DeleteTriggersRequest) -> tsv.DeleteTriggersResponse: ...


class AppCalls(Protocol):
    """flyteidl2 AppService, request in and response out."""

    def create(self, request: ap.CreateRequest) -> ap.CreateResponse: ...

    def get(self, request: ap.GetRequest) -> ap.GetResponse: ...

    def update(self, request: ap.UpdateRequest) -> ap.UpdateResponse: ...

    def delete(self, request: ap.DeleteRequest) -> ap.DeleteResponse: ...

    def list(self, request: ap.ListRequest) -> ap.ListResponse: ...


class ClusterCalls(Protocol):
    def select_cluster(
        self, request: cluster_pb2.SelectClusterRequest
    ) -> cluster_pb2.SelectClusterResponse: ...


class UploadCalls(Protocol):
    def upload_inputs(self, request: dp.UploadInputsRequest) -> dp.UploadInputsResponse: ...


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

    @property
    @abstractmethod
    def _triggers(self) -> TriggerCalls: ...

    @property
    @abstractmethod
    def _apps(self) -> AppCalls: ...

    @property
    @abstractmethod
    def _clusters(self) -> ClusterCalls: ...

    @abstractmethod
    def _uploads_at(self, endpoint: str) -> UploadCalls:
        """The data proxy `SelectCluster` pointed at (`""`: this plane's own)."""

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

    # -- triggers ---------------------------------------------------------------------------------------

    def offload_trigger_inputs(self, trigger: td.TaskTrigger, spec: td.TaskSpec) -> td.TaskTrigger:
        """`trigger` with its inputs offloaded, as `flyte deploy` does (trigger_serde.offload_trigger_inputs):
        only when it binds inputs, routed by `SelectCluster(OPERATION_UPLOAD_TRIGGER)` and stored with
        `UploadInputs` (the task referenced by its spec: it is registered in the same request). A plane
        without zero trust answers UNIMPLEMENTED, and the inputs stay inline."""
        if trigger.spec.WhichOneof("input_wrapper") != "inputs" or not trigger.spec.inputs.literals:
            return trigger
        i = spec.task_template.id
        project = identifier_pb2.ProjectIdentifier(organization=i.org, name=i.project, domain=i.domain)
        select = cluster_pb2.SelectClusterRequest(
            operation=cluster_pb2.SelectClusterRequest.Operation.OPERATION_UPLOAD_TRIGGER, project_id=project
        )
        what = f"offload the inputs of trigger {trigger.name} of task {i.name}"
        try:
            selected = self._call(
                what, lambda: self._clusters.select_cluster(select), tolerate=(Code.UNIMPLEMENTED,)
            )
            uploads = self._uploads_at(selected.cluster_endpoint)
            request = dp.UploadInputsRequest(inputs=trigger.spec.inputs, project_id=project, task_spec=spec)
            uploaded = self._call(
                what, lambda: uploads.upload_inputs(request), tolerate=(Code.UNIMPLEMENTED,)
            )
        except _Tolerated:
            return trigger
        offloaded = td.TaskTrigger()
        offloaded.CopyFrom(trigger)
        offloaded.spec.offloaded_input_data.CopyFrom(uploaded.offloaded_input_data)
        return offloaded

    def list_triggers(
        self, project: str, domain: str, org: str, *, task_name: str | None = None
    ) -> list[tdef.Trigger]:
        """The live triggers of a project/domain (or of one task, every version)."""
        if task_name:
            scope: dict[str, object] = {
                "task_name": td.TaskName(org=org, project=project, domain=domain, name=task_name)
            }
        else:
            scope = {
                "project_id": identifier_pb2.ProjectIdentifier(organization=org, name=project, domain=domain)
            }

        def page(token: str) -> tuple[list[tdef.Trigger], str]:
            request = tsv.ListTriggersRequest(request=list_pb2.ListRequest(limit=_PAGE, token=token), **scope)
            response = self._triggers.list_triggers(request)
            return list(response.triggers), response.token

        return self._all_pages(f"list triggers of {project}/{domain}", page, service="TriggerService")

    def get_trigger(
        self, project: str, domain: str, org: str, task_name: str, name: str
    ) -> tdef.TriggerDetails | None:
        """A live trigger, or None when there is none."""
        trigger = identifier_pb2.TriggerName(
            org=org, project=project, domain=domain, task_name=task_name, name=name
        )
        try:
            response = self._call(
                f"get trigger {name} of task {task_name}",
                lambda: self._triggers.get_trigger_details(tsv.GetTriggerDetailsRequest(name=trigger)),
                tolerate=(Code.NOT_FOUND,),
                service="TriggerService",
            )
        except _Tolerated:
            return None
        return response.trigger

    def set_triggers_active(self, names: Sequence[identifier_pb2.TriggerName], active: bool) -> None:
        if names:
            request = tsv.UpdateTriggersRequest(names=list(names), active=active)
            verb = "activate" if active else "deactivate"
            self._call(
                f"{verb} {_listed(names)}",
                lambda: self._triggers.update_triggers(request),
                service="TriggerService",
            )

    def delete_triggers(self, names: Sequence[identifier_pb2.TriggerName]) -> None:
        if names:
            request = tsv.DeleteTriggersRequest(names=list(names))
            self._call(
                f"delete {_listed(names)}",
                lambda: self._triggers.delete_triggers(request),
                service="TriggerService",
            )

    # -- apps -------------------------------------------------------------------------------------------

    def deploy_app(self, app: ad.App, *, reason: str) -> tuple[AppOutcome, ad.App]:
        """Create `app`, or update the one of that name when its spec differs (recorded with `reason`).

        Returns what happened and the app as the plane now holds it. The comparison is the flyte SDK's
        (`App.replace`): the stored creator is kept, and an app without ingress keeps the stored one."""
        i = app.metadata.id
        existing = self.get_app(i.project, i.domain, i.org, i.name)
        if existing is None:
            try:
                created = self._call(
                    f"create app {i.name}",
                    lambda: self._apps.create(ap.CreateRequest(app=app)),
                    tolerate=(Code.ALREADY_EXISTS,),
                    service="AppService",
                )
                return "registered", created.app
            except _Tolerated:
                existing = self.get_app(i.project, i.domain, i.org, i.name)
                if existing is None:
                    raise ControlPlaneError(
                        f"control plane {self.label} says app {i.name} exists in {i.project}/{i.domain}, "
                        "but cannot return it"
                    ) from None
        spec = ad.Spec()
        spec.CopyFrom(app.spec)
        spec.creator.CopyFrom(existing.spec.creator)
        if same_app_spec(existing.spec, spec):
            return "unchanged", existing
        replacement = ad.App(
            metadata=ad.Meta(
                id=i,
                revision=existing.metadata.revision,
                labels=dict(app.metadata.labels) or dict(existing.metadata.labels),
                code_bundle_uri=app.metadata.code_bundle_uri,
                source_code=app.metadata.source_code,
            ),
            spec=spec,
            status=existing.status,
        )
        updated = self._call(
            f"update app {i.name} (revision {existing.metadata.revision})",
            lambda: self._apps.update(ap.UpdateRequest(app=replacement, reason=reason)),
            service="AppService",
        )
        return "updated", updated.app

    def get_app(self, project: str, domain: str, org: str, name: str) -> ad.App | None:
        app_id = ad.Identifier(org=org, project=project, domain=domain, name=name)
        try:
            response = self._call(
                f"get app {name}",
                lambda: self._apps.get(ap.GetRequest(app_id=app_id)),
                tolerate=(Code.NOT_FOUND,),
                service="AppService",
            )
        except _Tolerated:
            return None
        return response.app

    def list_apps(self, project: str, domain: str, org: str) -> list[ad.App]:
        scope = identifier_pb2.ProjectIdentifier(organization=org, name=project, domain=domain)

        def page(token: str) -> tuple[list[ad.App], str]:
            request = ap.ListRequest(request=list_pb2.ListRequest(limit=_PAGE, token=token), project=scope)
            response = self._apps.list(request)
            return list(response.apps), response.token

        return self._all_pages(f"list apps of {project}/{domain}", page, service="AppService")

    def delete_app(self, project: str, domain: str, org: str, name: str) -> bool:
        """Delete an app; False when there was none."""
        app_id = ad.Identifier(org=org, project=project, domain=domain, name=name)
        try:
            self._call(
                f"delete app {name}",
                lambda: self._apps.delete(ap.DeleteRequest(app_id=app_id)),
                tolerate=(Code.NOT_FOUND,),
                service="AppService",
            )
        except _Tolerated:
            return False
        return True

    # -- plumbing ---------------------------------------------------------------------------------------

    def _all_pages(
        self, what: str, page: Callable[[str], tuple[list[_T], str]], *, service: str = "TaskService"
    ) -> list[_T]:
        items: list[_T] = []
        token = ""
        while True:
            found, token = self._call(what, functools.partial(page, token), service=service)
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
                if exc.code == Code.UNIMPLEMENTED and service != "TaskService":
                    raise Unsupported(
                        f"control plane {self.label} does not serve flyteidl2 {service} (cannot {what})"
                    ) from exc
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


def same_app_spec(old: ad.Spec, new: ad.Spec) -> bool:
    """The flyte SDK's test (`App._app_specs_are_equal`): equal as JSON, `new` taking `old`'s ingress
    when it has none of its own."""
    old_json = MessageToDict(old)
    new_json = MessageToDict(new)
    if not new_json.get("ingress") and "ingress" in old_json:
        new_json["ingress"] = old_json["ingress"]
    return old_json == new_json


def _listed(names: Sequence[identifier_pb2.TriggerName]) -> str:
    shown = ", ".join(f"{n.task_name}/{n.name}" for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"trigger{'s' if len(names) > 1 else ''} {shown}{more}"


def _task_id(spec: td.TaskSpec) -> td.TaskIdentifier:
    i = spec.task_template.id
    return td.TaskIdentifier(org=i.org, project=i.project, domain=i.domain, name=i.name, version=i.version)

"""flyteidl2 `TaskService` backed by the SQLite `TaskStore`: the embedded control plane's logic.

Served through the generated `TaskServiceWSGIApplication` (see `server.py`). Behaviour a client can
rely on:
- DeployTask registers a (project, domain, name, version) once, into a project the plane has
  (NOT_FOUND otherwise, as on Flyte's backend: see `project_service.py`). Deploying an existing version
  again answers ALREADY_EXISTS, saying whether the stored spec is identical (a no-op) or different
  (refused: versions are immutable). The flyte SDK treats ALREADY_EXISTS as "skipping".
- GetTaskDetails answers NOT_FOUND for an unknown task or version.
- ListTasks lists the latest version of each task in a project/domain (or a whole org) among the
  versions its filters select (a `version` filter lists every task of that version, as on Flyte's
  backend), ListVersions every version of one task, newest first; both page with an offset token.
- Malformed identifiers, versions and list options answer INVALID_ARGUMENT naming the field.
- It is single-tenant: `org` is accepted and echoed but scopes nothing (see `store.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.common import list_pb2
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from google.protobuf.timestamp_pb2 import Timestamp

from deployer.controlplane.specs import spec_differences
from deployer.controlplane.store import PutOutcome, StoredTask, TaskKey, TaskStore
from deployer.controlplane.trigger_service import check_schedule
from deployer.controlplane.validation import validate, validate_deploy, validate_version

DEFAULT_PAGE = 100
MAX_PAGE = 1000

_F = list_pb2.Filter.Function
_TEXT_TESTS: dict[int, Callable[[str, Sequence[str]], bool]] = {
    _F.EQUAL: lambda v, xs: v == xs[0],
    _F.NOT_EQUAL: lambda v, xs: v != xs[0],
    _F.CONTAINS: lambda v, xs: xs[0] in v,
    _F.CONTAINS_CASE_INSENSITIVE: lambda v, xs: xs[0].lower() in v.lower(),
    _F.VALUE_IN: lambda v, xs: v in xs,
    _F.VALUE_NOT_IN: lambda v, xs: v not in xs,
    _F.ENDS_WITH: lambda v, xs: v.endswith(xs[0]),
    _F.NOT_ENDS_WITH: lambda v, xs: not v.endswith(xs[0]),
}
_FIELDS: dict[str, Callable[[StoredTask], str]] = {
    "name": lambda t: t.key.name,
    "version": lambda t: t.key.version,
    "environment_name": lambda t: t.environment,
    "short_name": lambda t: t.short_name,
}
_SORT_KEYS: dict[str, Callable[[StoredTask], Any]] = {
    "created_at": lambda t: t.deployed_at_ns,
    "deployed_at": lambda t: t.deployed_at_ns,
    "name": lambda t: t.key.name,
    "version": lambda t: t.key.version,
}


class TaskService:
    """Implements the generated `TaskServiceSync` protocol."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def deploy_task(
        self, request: ts.DeployTaskRequest, ctx: RequestContext[Any, Any]
    ) -> ts.DeployTaskResponse:
        validate_deploy(request)
        key = _key(request.task_id)
        if self.store.get_project(key.project) is None:
            raise ConnectError(Code.NOT_FOUND, f"project {key.project!r} not found")
        names: set[str] = set()
        for trigger in request.triggers:
            # As the backend: a bad schedule refuses the whole request before anything is written.
            check_schedule(trigger.name, trigger.automation_spec)
            if trigger.name in names:
                raise ConnectError(Code.INVALID_ARGUMENT, f"triggers: {trigger.name!r} is sent twice")
            names.add(trigger.name)
        outcome, stored = self.store.put(key, request.spec, request.triggers)
        if outcome is PutOutcome.unchanged:
            raise ConnectError(Code.ALREADY_EXISTS, f"task {key} already exists with an identical spec")
        if outcome is PutOutcome.conflict:
            fields = ", ".join(spec_differences(stored.spec, request.spec)) or "encoding"
            raise ConnectError(
                Code.ALREADY_EXISTS,
                f"task {key} already exists with a different spec (differs in: {fields}); "
                "versions are immutable, deploy a new version",
            )
        return ts.DeployTaskResponse()

    def get_task_details(
        self, request: ts.GetTaskDetailsRequest, ctx: RequestContext[Any, Any]
    ) -> ts.GetTaskDetailsResponse:
        validate(request)
        key = _key(request.task_id)
        stored = self.store.get(key)
        if stored is None:
            raise ConnectError(Code.NOT_FOUND, f"task {key} not found")
        return ts.GetTaskDetailsResponse(
            details=td.TaskDetails(task_id=request.task_id, metadata=_metadata(stored), spec=stored.spec)
        )

    def list_tasks(self, request: ts.ListTasksRequest, ctx: RequestContext[Any, Any]) -> ts.ListTasksResponse:
        validate(request)
        if request.WhichOneof("scope_by") == "project_id":
            pid = request.project_id
            org = pid.organization
            project: str | None = pid.name
            domain: str | None = pid.domain
        else:
            org, project, domain = request.org, None, None
        version = _exact_version(request.request)
        if version is not None and project and domain:
            # The one filter a deploy's bulk check sends: answered from the (project, domain, version) index.
            candidates = self.store.tasks_at_version(project=project, domain=domain, version=version)
        else:
            candidates = self.store.all_tasks(project=project, domain=domain)
        total = self.store.count_names(project=project, domain=domain)
        found = [t for t in candidates if _known_filters_match(t, request.known_filters)]
        found = _latest_per_name(_filtered(found, request.request))
        found = _sorted(found, request.request, default_sort=("created_at", False))
        page, token = _page(found, request.request)
        return ts.ListTasksResponse(
            tasks=[td.Task(task_id=_task_id(t.key, org), metadata=_metadata(t)) for t in page],
            token=token,
            metadata=ts.ListTasksResponse.ListTasksMetadata(total=total, filtered_total=len(found)),
        )

    def list_versions(
        self, request: ts.ListVersionsRequest, ctx: RequestContext[Any, Any]
    ) -> ts.ListVersionsResponse:
        validate(request)
        n = request.task_name
        found = self.store.versions(org=n.org, project=n.project, domain=n.domain, name=n.name)
        found = _filter_and_sort(found, request.request, default_sort=("created_at", True))
        page, token = _page(found, request.request)
        return ts.ListVersionsResponse(
            versions=[
                ts.ListVersionsResponse.VersionResponse(version=t.key.version, deployed_at=_timestamp(t))
                for t in page
            ],
            token=token,
        )


def _key(task_id: td.TaskIdentifier) -> TaskKey:
    validate_version(task_id.version)
    return TaskKey(task_id.org, task_id.project, task_id.domain, task_id.name, task_id.version)


def _task_id(key: TaskKey, org: str) -> td.TaskIdentifier:
    return td.TaskIdentifier(
        org=org, project=key.project, domain=key.domain, name=key.name, version=key.version
    )


def _timestamp(t: StoredTask) -> Timestamp:
    ts_ = Timestamp()
    ts_.FromNanoseconds(t.deployed_at_ns)
    return ts_


def _metadata(t: StoredTask) -> td.TaskMetadata:
    spec = t.spec
    return td.TaskMetadata(
        short_name=t.short_name,
        deployed_at=_timestamp(t),
        environment_name=t.environment,
        short_description=spec.documentation.short_description,
    )


def _known_filters_match(t: StoredTask, filters: Sequence[ts.ListTasksRequest.KnownFilter]) -> bool:
    for f in filters:
        kind = f.WhichOneof("filter_by")
        if kind == "is_entrypoint" and t.is_entrypoint != f.is_entrypoint:
            return False
        # Nobody is authenticated on the embedded plane, so no task has a deployer.
        if kind == "deployed_by" and f.deployed_by:
            return False
    return True


def _filter_and_sort(
    tasks: list[StoredTask], options: list_pb2.ListRequest, *, default_sort: tuple[str, bool]
) -> list[StoredTask]:
    return _sorted(_filtered(tasks, options), options, default_sort=default_sort)


def _exact_version(options: list_pb2.ListRequest) -> str | None:
    for f in options.filters:
        if f.field == "version" and f.function == _F.EQUAL and len(f.values) == 1:
            return str(f.values[0])
    return None


def _latest_per_name(tasks: list[StoredTask]) -> list[StoredTask]:
    """The most recently deployed row of each (project, domain, name), in the order given."""
    latest: dict[tuple[str, str, str], StoredTask] = {}
    for t in tasks:
        k = (t.key.project, t.key.domain, t.key.name)
        if k not in latest or t.deployed_at_ns >= latest[k].deployed_at_ns:
            latest[k] = t
    kept = {id(t) for t in latest.values()}
    return [t for t in tasks if id(t) in kept]


def _filtered(tasks: list[StoredTask], options: list_pb2.ListRequest) -> list[StoredTask]:
    if options.raw_filters:
        raise ConnectError(Code.INVALID_ARGUMENT, "request.raw_filters: not supported, use request.filters")
    for f in options.filters:
        if f.field not in _FIELDS:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"request.filters: unknown field {f.field!r} (known: {', '.join(sorted(_FIELDS))})",
            )
        test = _TEXT_TESTS.get(f.function)
        if test is None:
            name = list_pb2.Filter.Function.Name(f.function)
            raise ConnectError(Code.INVALID_ARGUMENT, f"request.filters: function {name} is not supported")
        if not f.values:
            raise ConnectError(Code.INVALID_ARGUMENT, f"request.filters: {f.field} filter has no values")
        get = _FIELDS[f.field]
        tasks = [t for t in tasks if test(get(t), list(f.values))]
    return tasks


def _sorted(
    tasks: list[StoredTask], options: list_pb2.ListRequest, *, default_sort: tuple[str, bool]
) -> list[StoredTask]:
    sorts = list(options.sort_by_fields) or ([options.sort_by] if options.HasField("sort_by") else [])
    if not sorts:
        key, descending = default_sort
        return sorted(tasks, key=_SORT_KEYS[key], reverse=descending)
    # Stable sorts applied from the least significant key to the most significant one.
    for sort in reversed(sorts):
        if sort.key not in _SORT_KEYS:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"request.sort_by: unknown key {sort.key!r} (known: {', '.join(sorted(_SORT_KEYS))})",
            )
        tasks = sorted(tasks, key=_SORT_KEYS[sort.key], reverse=sort.direction == list_pb2.Sort.DESCENDING)
    return tasks


def _page(tasks: list[StoredTask], options: list_pb2.ListRequest) -> tuple[list[StoredTask], str]:
    offset = _offset(options.token)
    limit = min(options.limit or DEFAULT_PAGE, MAX_PAGE)
    end = offset + limit
    return tasks[offset:end], (str(end) if end < len(tasks) else "")


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 12:
        raise ConnectError(
            Code.INVALID_ARGUMENT, f"request.token: {token[:40]!r} is not a token this server issued"
        )
    return int(token)


@dataclass(frozen=True)
class RequestSummary:
    """What one log line says about a request."""

    method: str
    subject: str


def summarize(method: str, request: object) -> RequestSummary:
    """The method and what it is about (for the request log; the server escapes and shortens it)."""
    from flyteidl2.dataproxy import dataproxy_service_pb2 as dp
    from flyteidl2.project import project_service_pb2 as ps

    if isinstance(request, dp.CreateUploadLocationRequest):
        parts = (request.project, request.domain, request.filename_root, request.filename)
        return RequestSummary(method, "/".join(p for p in parts if p))
    if isinstance(request, ps.GetProjectRequest):
        return RequestSummary(method, request.id)
    if isinstance(request, ps.CreateProjectRequest | ps.UpdateProjectRequest):
        return RequestSummary(method, request.project.id)
    if isinstance(request, ts.DeployTaskRequest | ts.GetTaskDetailsRequest):
        return RequestSummary(method, str(_key_unchecked(request.task_id)))
    if isinstance(request, ts.ListVersionsRequest):
        n = request.task_name
        return RequestSummary(method, "/".join(p for p in (n.org, n.project, n.domain, n.name) if p))
    if isinstance(request, ts.ListTasksRequest):
        p = request.project_id
        return RequestSummary(
            method, "/".join(x for x in (p.organization, p.name, p.domain) if x) or request.org
        )
    return RequestSummary(method, _named(request))


def _named(request: object) -> str:
    """What a trigger or app request is about: `project/domain/task/trigger`, `project/domain/app`."""
    from flyteidl2.app import app_payload_pb2 as ap
    from flyteidl2.trigger import trigger_service_pb2 as tsv

    def parts(*values: str) -> str:
        return "/".join(v for v in values if v)[:300]

    if isinstance(request, tsv.UpdateTriggersRequest | tsv.DeleteTriggersRequest):
        return ", ".join(parts(n.project, n.domain, n.task_name, n.name) for n in request.names[:5])
    name = getattr(request, "name", None)
    if name is not None and hasattr(name, "task_name"):
        return parts(name.project, name.domain, name.task_name, name.name)
    if isinstance(request, ap.CreateRequest | ap.UpdateRequest):
        i = request.app.metadata.id
        return parts(i.project, i.domain, i.name)
    if isinstance(request, ap.GetRequest | ap.DeleteRequest):
        i = request.app_id
        return parts(i.project, i.domain, i.name)
    return ""


def _key_unchecked(task_id: td.TaskIdentifier) -> TaskKey:
    return TaskKey(task_id.org, task_id.project, task_id.domain, task_id.name, task_id.version)

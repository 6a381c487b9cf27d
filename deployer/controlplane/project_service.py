"""flyteidl2 `ProjectService` of the embedded control plane, over the SQLite `TaskStore`.

As on the open-source Flyte backend (runs/service/project_service.go): CreateProject answers
ALREADY_EXISTS for a known id, GetProject and UpdateProject NOT_FOUND for an unknown one, ListProjects
hides archived projects unless asked, pages with an offset token; every project carries the plane's
domains. Only projects the plane has can receive tasks or bundles (`TaskService.DeployTask` and
`DataProxyService.CreateUploadLocation` answer NOT_FOUND otherwise).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.common import list_pb2
from flyteidl2.project import project_service_pb2 as ps
from flyteidl2.project.project_service_connect import ProjectServiceSync
from flyteidl2.task import run_pb2

from deployer.controlplane.store import StoredProject, TaskStore
from deployer.controlplane.validation import validate

DEFAULT_PROJECT = "flytesnacks"
"""The project a new `flyte-deploy serve` has, as Flyte's sandbox does (and the README's examples use)."""
DOMAINS = ("development", "staging", "production")
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_MAX_PAGE = 1000
_MAX_TEXT = 1024


class ProjectService(ProjectServiceSync):  # type: ignore[misc]
    def __init__(self, store: TaskStore, domains: tuple[str, ...] = DOMAINS) -> None:
        self.store = store
        self.domains = domains

    def create_project(
        self, request: ps.CreateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> ps.CreateProjectResponse:
        validate(request)
        project = _checked(request.project)
        if not self.store.create_project(project):
            raise ConnectError(Code.ALREADY_EXISTS, f"project {project.id!r} already exists")
        return ps.CreateProjectResponse()

    def update_project(
        self, request: ps.UpdateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> ps.UpdateProjectResponse:
        validate(request)
        project = _checked(request.project)
        if not self.store.update_project(project):
            raise ConnectError(Code.NOT_FOUND, f"project {project.id!r} not found")
        return ps.UpdateProjectResponse()

    def get_project(
        self, request: ps.GetProjectRequest, ctx: RequestContext[Any, Any]
    ) -> ps.GetProjectResponse:
        if not request.id:
            raise ConnectError(Code.INVALID_ARGUMENT, "id: is required")
        stored = self.store.get_project(request.id)
        if stored is None:
            raise ConnectError(Code.NOT_FOUND, f"project {request.id[:80]!r} not found")
        return ps.GetProjectResponse(project=self.message(stored))

    def list_projects(
        self, request: ps.ListProjectsRequest, ctx: RequestContext[Any, Any]
    ) -> ps.ListProjectsResponse:
        found = self.store.list_projects()
        if request.filters:
            keep = _string_filters(request.filters)
            found = [p for p in found if keep(p)]
        else:  # as on Flyte's backend: archived projects only when a filter asks for them
            found = [p for p in found if p.state != ps.PROJECT_STATE_ARCHIVED]
        if request.sort_by.key:
            if request.sort_by.key not in _SORT_KEYS:
                raise ConnectError(
                    Code.INVALID_ARGUMENT, f"sort_by: invalid sort field {request.sort_by.key[:40]!r}"
                )
            descending = request.sort_by.direction == list_pb2.Sort.DESCENDING
            found = sorted(found, key=_SORT_KEYS[request.sort_by.key], reverse=descending)
        offset = _offset(request.token)
        limit = min(request.limit or _MAX_PAGE, _MAX_PAGE)
        page = found[offset : offset + limit]
        token = str(offset + limit) if offset + limit < len(found) else ""
        return ps.ListProjectsResponse(
            projects=ps.Projects(projects=[self.message(p) for p in page], token=token)
        )

    def ensure(self, project_id: str, description: str = "") -> bool:
        """Create `project_id` unless it exists; True when it was created."""
        return self.store.create_project(_stored(project_id, project_id, description, {}, 0))

    def exists(self, project_id: str) -> bool:
        return self.store.get_project(project_id) is not None

    def message(self, stored: StoredProject) -> ps.Project:
        return ps.Project(
            id=stored.id,
            name=stored.name,
            description=stored.description,
            labels=run_pb2.Labels(values=stored.labels),
            state=stored.state,
            domains=[ps.Domain(id=d, name=d) for d in self.domains],
        )


def _checked(project: ps.Project) -> StoredProject:
    if not PROJECT_ID.fullmatch(project.id):
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"project.id: {project.id[:80]!r} must be 1-63 characters of [A-Za-z0-9._-], starting with a "
            "letter or digit",
        )
    for field, value in (("name", project.name), ("description", project.description)):
        if len(value) > _MAX_TEXT:
            raise ConnectError(Code.INVALID_ARGUMENT, f"project.{field}: at most {_MAX_TEXT} characters")
    labels = dict(project.labels.values)
    if len(labels) > 64 or any(len(k) > 63 or len(v) > 255 for k, v in labels.items()):
        raise ConnectError(Code.INVALID_ARGUMENT, "project.labels: at most 64 labels of 63/255 characters")
    return _stored(project.id, project.name or project.id, project.description, labels, int(project.state))


def _stored(
    project_id: str, name: str, description: str, labels: dict[str, str], state: int
) -> StoredProject:
    return StoredProject(
        id=project_id,
        name=name,
        description=description,
        labels=labels,
        state=state,
        created_at_ns=time.time_ns(),
    )


_COLUMNS: dict[str, Callable[[StoredProject], str]] = {
    "id": lambda p: p.id,
    "identifier": lambda p: p.id,
    "name": lambda p: p.name,
    "description": lambda p: p.description,
    "state": lambda p: str(p.state),
}
_SORT_KEYS: dict[str, Callable[[StoredProject], Any]] = {
    "created_at": lambda p: (p.created_at_ns, p.id),
    "id": lambda p: p.id,
    "identifier": lambda p: p.id,
    "name": lambda p: p.name,
}
_FUNCTIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda have, want: have == want,
    "ne": lambda have, want: have != want,
    "contains": lambda have, want: want in have,
    "value_in": lambda have, want: have in [v.strip() for v in want.split(";")],
}


def _string_filters(filters: str) -> Callable[[StoredProject], bool]:
    """Flyte's compact filter language, `eq(state, 0)+contains(name, ml)`: every term must hold."""
    tests: list[Callable[[StoredProject], bool]] = []
    for term in filters[:_MAX_TEXT].split("+"):
        term = term.strip()
        open_at, close_at = term.find("("), term.rfind(")")
        args = term[open_at + 1 : close_at].split(",", 1) if 0 < open_at < close_at == len(term) - 1 else []
        function = _FUNCTIONS.get(term[:open_at].strip().lower()) if args else None
        if function is None or len(args) != 2 or args[0].strip() not in _COLUMNS:
            raise ConnectError(Code.INVALID_ARGUMENT, f"filters: cannot read {term[:80]!r}")
        tests.append(_term(function, _COLUMNS[args[0].strip()], args[1].strip()))
    return lambda p: all(t(p) for t in tests)


def _term(
    function: Callable[[str, str], bool], column: Callable[[StoredProject], str], want: str
) -> Callable[[StoredProject], bool]:
    return lambda p: function(column(p), want)


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 12:
        raise ConnectError(Code.INVALID_ARGUMENT, "token: not a token this server issued")
    return int(token)

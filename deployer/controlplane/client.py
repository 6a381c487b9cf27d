"""Our client of a Flyte 2 control plane: flyteidl2 `TaskService` over ConnectRPC.

Used for every deploy, whether the endpoint is a real Flyte 2 deployment or the embedded plane.

Endpoints: `http://HOST:PORT`, `https://HOST[:PORT]`, or Flyte's `dns:///HOST:PORT` / bare
`HOST:PORT` (HTTPS, or plain HTTP with `insecure=True`, as `flyte --insecure` does). An API key is
sent as `authorization: Bearer KEY`.

Connection failures (Connect code UNAVAILABLE) are retried a bounded number of times with
exponential backoff, then reported as `ControlPlaneError`. A retried DeployTask is safe: if the
first attempt did land, the retry finds the identical spec and reports the task "unchanged".
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Literal, TypeVar
from urllib.parse import urlparse

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from flyteidl2.task.task_service_connect import TaskServiceClientSync

from deployer.controlplane.specs import spec_differences, spec_digest
from deployer.errors import ControlPlaneError, UsageError, VersionConflict
from deployer.redact import printable_url, without_secrets

DeployOutcome = Literal["registered", "unchanged"]

_T = TypeVar("_T")
_PAGE = 100


def normalize_endpoint(endpoint: str, *, insecure: bool = False) -> str:
    """The base URL ConnectRPC posts to, from any endpoint form Flyte users write."""
    raw = endpoint.strip().rstrip("/")
    shown = printable_url(endpoint)
    parsed = urlparse(raw)
    scheme = "http" if insecure else "https"
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return raw
    if parsed.scheme == "dns":
        host = parsed.path.lstrip("/")
        if not host:
            raise UsageError(f"--endpoint {shown!r}: dns:/// needs HOST:PORT, e.g. dns:///127.0.0.1:8090")
        return f"{scheme}://{host}"
    # urlparse reads "host:8090" as scheme "host"; a real unknown scheme has a netloc.
    if parsed.netloc or not raw or " " in raw:
        raise UsageError(
            f"--endpoint {shown!r}: use http://HOST:PORT, https://HOST, dns:///HOST:PORT or HOST:PORT"
        )
    return f"{scheme}://{raw}"


class ControlPlaneClient:
    def __init__(
        self,
        endpoint: str,
        *,
        insecure: bool = False,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        attempts: int = 4,
        backoff_s: float = 0.25,
    ) -> None:
        self.url = normalize_endpoint(endpoint, insecure=insecure)
        self.shown = printable_url(self.url)
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._rpc = TaskServiceClientSync(self.url, timeout_ms=int(timeout_s * 1000))

    def close(self) -> None:
        self._rpc.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- TaskService ------------------------------------------------------------------------

    def deploy_task(
        self, spec: td.TaskSpec, *, project: str, domain: str, org: str, name: str, version: str
    ) -> DeployOutcome:
        """Register `spec` under the given identifier.

        Returns "registered", or "unchanged" when the version already exists with an identical spec;
        raises `VersionConflict` when it exists with a different one (versions are immutable)."""
        task_id = td.TaskIdentifier(org=org, project=project, domain=domain, name=name, version=version)
        try:
            self._call(
                f"deploy task {name} version {version}",
                lambda: self._rpc.deploy_task(
                    ts.DeployTaskRequest(task_id=task_id, spec=spec), headers=self._headers
                ),
                tolerate=(Code.ALREADY_EXISTS,),
            )
            return "registered"
        except _Tolerated:
            pass
        existing = self.get_task(project, domain, org, name, version)
        if existing is None:
            raise ControlPlaneError(
                f"control plane {self.shown} says task {name} version {version} exists in "
                f"{project}/{domain}, but cannot return it"
            )
        if spec_digest(existing.spec) == spec_digest(spec):
            return "unchanged"
        fields = ", ".join(spec_differences(existing.spec, spec)) or "encoding"
        raise VersionConflict(
            f"task {name} version {version} already exists in {project}/{domain} with a different spec "
            f"(differs in: {fields}); versions are immutable: deploy under a new version"
        )

    def get_task(self, project: str, domain: str, org: str, name: str, version: str) -> td.TaskDetails | None:
        """The deployed task, or None when that task or version does not exist."""
        task_id = td.TaskIdentifier(org=org, project=project, domain=domain, name=name, version=version)
        try:
            response = self._call(
                f"get task {name} version {version}",
                lambda: self._rpc.get_task_details(
                    ts.GetTaskDetailsRequest(task_id=task_id), headers=self._headers
                ),
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
            response = self._rpc.list_tasks(request, headers=self._headers)
            return list(response.tasks), response.token

        return self._all_pages(f"list tasks of {project}/{domain}", page)

    def list_versions(self, project: str, domain: str, org: str, name: str) -> list[str]:
        """Every deployed version of one task, newest first."""
        task_name = td.TaskName(org=org, project=project, domain=domain, name=name)

        def page(token: str) -> tuple[list[str], str]:
            request = ts.ListVersionsRequest(
                task_name=task_name, request=list_pb2.ListRequest(limit=_PAGE, token=token)
            )
            response = self._rpc.list_versions(request, headers=self._headers)
            return [v.version for v in response.versions], response.token

        return self._all_pages(f"list versions of task {name}", page)

    # -- plumbing ---------------------------------------------------------------------------

    def _all_pages(self, what: str, page: Callable[[str], tuple[list[_T], str]]) -> list[_T]:
        items: list[_T] = []
        token = ""
        while True:
            found, token = self._call(what, functools.partial(page, token))
            items.extend(found)
            if not token:
                return items

    def _call(self, what: str, rpc: Callable[[], _T], *, tolerate: tuple[Code, ...] = ()) -> _T:
        for attempt in range(1, self._attempts + 1):
            try:
                return rpc()
            except ConnectError as exc:
                if exc.code in tolerate:
                    raise _Tolerated from exc
                if exc.code == Code.UNAVAILABLE and attempt < self._attempts:
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
                    continue
                raise self._error(what, exc, attempt) from exc
        raise AssertionError("unreachable")

    def _error(self, what: str, exc: ConnectError, attempts: int) -> ControlPlaneError:
        reason = without_secrets(exc.message or exc.code.name, self.url)
        if exc.code == Code.UNAVAILABLE:
            return ControlPlaneError(
                f"control plane {self.shown} is unreachable ({reason}) after {attempts} attempts to {what}"
            )
        if exc.code in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
            return ControlPlaneError(
                f"control plane {self.shown} refused to {what}: {exc.code.name}: {reason} "
                "(check --api-key / FLYTE_DEPLOY_API_KEY)"
            )
        if exc.code == Code.UNIMPLEMENTED:
            return ControlPlaneError(
                f"{self.shown} does not serve flyteidl2 TaskService (cannot {what}: {reason}); "
                "is --endpoint a Flyte 2 control plane?"
            )
        return ControlPlaneError(f"control plane {self.shown} refused to {what}: {exc.code.name}: {reason}")


class _Tolerated(Exception):
    """An expected Connect error code that the caller turns into a result."""

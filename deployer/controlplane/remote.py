"""`RemoteControlPlane`: flyteidl2 services over ConnectRPC, for any Flyte 2 endpoint.

Every call goes through the flyte SDK's own session (`session.py`): the endpoint's TLS settings and the
SDK's auth flows (client credentials from a Flyte API key or the config, an external command, PKCE,
device flow), so whatever endpoint `flyte` reaches with a given config, this client reaches too.
Endpoints: `http://HOST:PORT`, `https://HOST[:PORT]`, or Flyte's `dns:///HOST:PORT` / bare `HOST:PORT`
(HTTPS, or plain HTTP with `insecure=True`, as `flyte --insecure` does; as in the SDK, a plain-HTTP
endpoint gets no OAuth flow). A key that is not a Flyte API key is sent as `authorization: Bearer KEY`
(`flyte-deploy serve --api-key`).

Uploads go where `ClusterService.SelectCluster` says, as the SDK routes its data-proxy calls: the same
session when the answer is this endpoint (or none), otherwise a session for the cluster's endpoint that
authenticates against this one.

Connection failures (Connect code UNAVAILABLE) are retried a bounded number of times with exponential
backoff (see `ControlPlane`). A retried DeployTask is safe: if the first attempt did land, the retry finds
the identical spec and reports the task "unchanged".
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, cast
from urllib.parse import urlparse

from flyteidl2.app.app_service_connect import AppServiceClient
from flyteidl2.cluster import payload_pb2 as cluster_pb2
from flyteidl2.cluster.service_connect import ClusterServiceClient
from flyteidl2.common import identifier_pb2
from flyteidl2.dataproxy.dataproxy_service_connect import DataProxyServiceClient
from flyteidl2.project.project_service_connect import ProjectServiceClient
from flyteidl2.task.task_service_connect import TaskServiceClientSync
from flyteidl2.trigger.trigger_service_connect import TriggerServiceClient

from deployer import sdk
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
from deployer.controlplane.session import RemoteTarget, Session
from deployer.errors import ControlPlaneError, UsageError
from deployer.redact import printable_url


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


def target_for(endpoint: str, *, insecure: bool = False, api_key: str | None = None) -> RemoteTarget:
    """A target with only an endpoint and a key: a Flyte API key authenticates with its client
    credentials (as `flyte` with FLYTE_API_KEY does), any other key is sent as a bearer token."""
    url = normalize_endpoint(endpoint, insecure=insecure)
    insecure = insecure or url.startswith("http://")
    decoded = sdk.decode_api_key(api_key) if api_key else None
    if decoded is None:
        # No OAuth flow: the SDK's default (PKCE) would wait for a browser login.
        return RemoteTarget(endpoint=url, insecure=insecure, auth_type="Passthrough", static_token=api_key)
    _, client_id, client_secret, _ = decoded
    return RemoteTarget(
        endpoint=url,
        insecure=insecure,
        auth_type="ClientSecret",
        client_id=client_id,
        client_secret=client_secret,
    )


class RemoteControlPlane(ControlPlane):
    concurrency = 8

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        insecure: bool = False,
        api_key: str | None = None,
        target: RemoteTarget | None = None,
        timeout_s: float = 30.0,
        attempts: int = 4,
        backoff_s: float = 0.25,
    ) -> None:
        if target is None:
            if endpoint is None:
                raise UsageError("a remote control plane needs an endpoint")
            target = target_for(endpoint, insecure=insecure, api_key=api_key)
        self.target = target
        self.url = normalize_endpoint(target.endpoint, insecure=target.insecure)
        super().__init__(self.url, attempts=attempts, backoff_s=backoff_s)
        self._timeout_s = timeout_s
        self._session: Session | None = None
        self._cluster_sessions: dict[str, Session] = {}
        self._routes: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def _connected(self) -> Session:
        with self._lock:
            if self._session is None:
                try:
                    self._session = Session(
                        dataclasses.replace(self.target, endpoint=self.url), timeout_s=self._timeout_s
                    )
                except ControlPlaneError:
                    raise
                except Exception as exc:
                    raise ControlPlaneError(f"cannot connect to control plane {self.label}: {exc}") from exc
            return self._session

    def _service(self, client_class: type) -> Any:
        """The plane's service behind `client_class` (a generated Connect client, async or `*ClientSync`),
        called synchronously: `self._service(TaskServiceClientSync).deploy_task(request)`."""
        return self._connected().service(client_class)

    @property
    def _tasks(self) -> TaskCalls:
        return cast(TaskCalls, self._service(TaskServiceClientSync))

    @property
    def _projects(self) -> ProjectCalls:
        return cast(ProjectCalls, self._service(ProjectServiceClient))

    def _dataproxy(self, project: str, domain: str, org: str) -> DataProxyCalls:
        key = (org, project, domain)
        if key not in self._routes:
            request = cluster_pb2.SelectClusterRequest(
                operation=cluster_pb2.SelectClusterRequest.Operation.OPERATION_CREATE_UPLOAD_LOCATION,
                project_id=identifier_pb2.ProjectIdentifier(name=project, domain=domain, organization=org),
            )
            response = self._call(
                f"select the cluster for uploads to {project}/{domain}",
                lambda: self._service(ClusterServiceClient).select_cluster(request),
                service="ClusterService",
            )
            self._routes[key] = self._cluster(response.cluster_endpoint).service(DataProxyServiceClient)
        return cast(DataProxyCalls, self._routes[key])

    def _cluster(self, endpoint: str) -> Session:
        own = self._connected()
        if not endpoint or endpoint.rstrip("/") == own.url.rstrip("/"):
            return own
        with self._lock:
            if endpoint not in self._cluster_sessions:
                target = dataclasses.replace(self.target, endpoint=endpoint)
                self._cluster_sessions[endpoint] = Session(
                    target, timeout_s=self._timeout_s, auth_endpoint=own.url
                )
            return self._cluster_sessions[endpoint]

    @property
    def _triggers(self) -> TriggerCalls:
        return cast(TriggerCalls, self._service(TriggerServiceClient))

    @property
    def _apps(self) -> AppCalls:
        return cast(AppCalls, self._service(AppServiceClient))

    @property
    def _clusters(self) -> ClusterCalls:
        return cast(ClusterCalls, self._service(ClusterServiceClient))

    def _uploads_at(self, endpoint: str) -> UploadCalls:
        """The data proxy of the cluster `SelectCluster` named (this plane's when it names none or this
        one), with this plane's credentials, as the flyte SDK builds a session per cluster."""
        return cast(UploadCalls, self._cluster(endpoint).service(DataProxyServiceClient))

    @property
    def _previews(self) -> Any:
        from deployer.controlplane.preview_service import PreviewServiceClientSync

        return self._service(PreviewServiceClientSync)

    def close(self) -> None:
        with self._lock:
            sessions = [*self._cluster_sessions.values(), *([self._session] if self._session else [])]
            self._cluster_sessions.clear()
            self._routes.clear()
            self._session = None
        for session in sessions:
            session.close()

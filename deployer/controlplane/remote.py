"""`RemoteControlPlane`: flyteidl2 services over ConnectRPC, for any Flyte 2 endpoint.

Endpoints: `http://HOST:PORT`, `https://HOST[:PORT]`, or Flyte's `dns:///HOST:PORT` / bare `HOST:PORT`
(HTTPS, or plain HTTP with `insecure=True`, as `flyte --insecure` does). An API key is sent as
`authorization: Bearer KEY`.

Connection failures (Connect code UNAVAILABLE) are retried a bounded number of times with exponential
backoff (see `ControlPlane`). A retried DeployTask is safe: if the first attempt did land, the retry finds
the identical spec and reports the task "unchanged".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlparse

from flyteidl2.task.task_service_connect import TaskServiceClientSync

from deployer.controlplane.base import ControlPlane, TaskCalls
from deployer.errors import UsageError
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


class _WithHeaders:
    """Any generated sync Connect client, its methods called with fixed request headers: request in,
    response out, the shape `ControlPlane` calls services in."""

    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self._client = client
        self._headers = headers

    def __getattr__(self, method: str) -> Callable[[Any], Any]:
        rpc = getattr(self._client, method)
        return lambda request: rpc(request, headers=self._headers)


class RemoteControlPlane(ControlPlane):
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
        super().__init__(self.url, attempts=attempts, backoff_s=backoff_s)
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_ms = int(timeout_s * 1000)
        self._clients: dict[type, Any] = {}

    def _service(self, client_class: type) -> Any:
        """The plane's service behind `client_class` (a generated `*ClientSync`), created once."""
        if client_class not in self._clients:
            self._clients[client_class] = client_class(self.url, timeout_ms=self._timeout_ms)
        return _WithHeaders(self._clients[client_class], self._headers)

    @property
    def _tasks(self) -> TaskCalls:
        return cast(TaskCalls, self._service(TaskServiceClientSync))

    @property
    def _previews(self) -> Any:
        from deployer.controlplane.preview_service import PreviewServiceClientSync

        return self._service(PreviewServiceClientSync)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

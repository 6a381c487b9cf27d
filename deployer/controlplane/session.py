"""The flyte SDK's own connection to a Flyte endpoint (TLS, auth, the async Connect clients), driven from
synchronous code.

`create_session_config` (flyte.remote._client.auth._session) builds what `flyte` itself uses: the pyqwest
transport with the endpoint's TLS settings and the interceptors of the configured auth flow (client
credentials from an API key or the config, an external command, PKCE, device flow, passthrough). Its
Connect clients are async; a `Session` owns one event loop on a thread of its own and runs every call
there, so callers stay synchronous and may call from several threads at once (calls interleave on the
loop). As in the SDK, an `insecure` (plain HTTP) endpoint gets no auth interceptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from deployer import sdk

_T = TypeVar("_T")
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RemoteTarget:
    """An endpoint and how to authenticate to it: the SDK's `PlatformConfig` fields we pass on."""

    endpoint: str
    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_cert_file_path: str | None = None
    auth_type: str | None = None
    """ClientSecret, ExternalCommand, Pkce, DeviceFlow or Passthrough; None: the SDK's default."""
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    command: tuple[str, ...] = ()
    proxy_command: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    http_proxy_url: str | None = None
    disable_keyring: bool = False
    static_token: str | None = field(default=None, repr=False)
    """A plain bearer token sent as is (`flyte-deploy serve --api-key`), besides any auth flow."""

    def session_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"insecure": self.insecure}
        if self.ca_cert_file_path:
            kwargs["ca_cert_file_path"] = self.ca_cert_file_path
        elif self.insecure_skip_verify:
            kwargs["insecure_skip_verify"] = True
        if self.auth_type:
            kwargs["auth_type"] = self.auth_type
        if self.client_id:
            kwargs["client_id"] = self.client_id
        if self.client_secret:
            kwargs["client_credentials_secret"] = self.client_secret
        if self.command:
            kwargs["command"] = list(self.command)
        if self.proxy_command:
            kwargs["proxy_command"] = list(self.proxy_command)
        if self.scopes:
            kwargs["scopes"] = list(self.scopes)
        if self.http_proxy_url:
            kwargs["http_proxy_url"] = self.http_proxy_url
        if self.disable_keyring:
            kwargs["disable_keyring"] = True
        return kwargs


def _not_a_refused_token(record: logging.LogRecord) -> bool:
    """The SDK logs the authorization server's refusal, then raises it; the raise becomes our one line."""
    return not (record.levelno >= logging.ERROR and record.pathname.endswith("_token_client.py"))


class Session:
    """One SDK session and its clients, on a private event loop."""

    def __init__(self, target: RemoteTarget, *, timeout_s: float, auth_endpoint: str | None = None) -> None:
        logger = sdk.sdk_logger()
        if _not_a_refused_token not in logger.filters:
            logger.addFilter(_not_a_refused_token)
        self.target = target
        self._timeout_s = timeout_s
        self._timeout_ms = int(timeout_s * 1000)
        self._headers: dict[str, str] = (
            {"authorization": f"Bearer {target.static_token}"} if target.static_token else {}
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="flyte-deploy-session", daemon=True
        )
        self._thread.start()
        self._clients: dict[type, Any] = {}
        self._lock = threading.Lock()
        try:
            self.config = self.run(
                sdk.create_session_config(
                    target.endpoint, auth_endpoint=auth_endpoint, **target.session_kwargs()
                ),
                timeout_s=_START_TIMEOUT_S,
            )
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """The base URL the session posts to."""
        return str(self.config.endpoint)

    def run(self, coro: Coroutine[Any, Any, _T], *, timeout_s: float | None = None) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=(timeout_s or self._timeout_s) + 5)
        except TimeoutError as exc:
            future.cancel()
            raise ConnectError(
                Code.DEADLINE_EXCEEDED, f"no answer within {timeout_s or self._timeout_s:.0f} s"
            ) from exc

    def service(self, client_class: type) -> SyncService:
        """The endpoint's service behind `client_class`: a generated Connect client class, async
        (`TaskServiceClient`) or its sync sibling (`TaskServiceClientSync`, which names the same service)."""
        async_class = _async_client_class(client_class)
        with self._lock:
            client = self._clients.get(async_class)
            if client is None:
                client = async_class(**self.config.connect_kwargs())
                self._clients[async_class] = client
        return SyncService(self, client)

    def call(self, client: Any, method: str, request: Any) -> Any:
        rpc = getattr(client, method)
        try:
            return self.run(rpc(request, headers=self._headers or None, timeout_ms=self._timeout_ms))
        except ConnectError:
            raise
        except Exception as exc:
            # The SDK's auth flows fail outside Connect (a refused token request, an external command
            # that exits non-zero): the control plane cannot be used without a credential.
            raise ConnectError(Code.UNAUTHENTICATED, _one_line(exc)) from exc

    def close(self) -> None:
        if self._loop.is_closed():
            return
        clients = list(self._clients.values())
        self._clients.clear()

        async def shutdown() -> None:
            for client in clients:
                close = getattr(client, "close", None)
                if close is not None:
                    result = close()
                    if asyncio.iscoroutine(result):
                        await result

        if self._thread.is_alive():
            # Closing is best effort: the process may be exiting.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()


class SyncService:
    """A generated async Connect client called synchronously: `service.deploy_task(request)`."""

    def __init__(self, session: Session, client: Any) -> None:
        self._session = session
        self._client = client

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda request: self._session.call(self._client, method, request)


def _async_client_class(client_class: type) -> type:
    name = client_class.__name__
    if not name.endswith("Sync"):
        return client_class
    module = importlib.import_module(client_class.__module__)
    found = getattr(module, name.removesuffix("Sync"), None)
    if not isinstance(found, type):
        raise TypeError(f"{client_class.__module__} has no async client {name.removesuffix('Sync')}")
    return found


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"

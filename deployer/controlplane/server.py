"""Serving the control plane's flyteidl2 services over HTTP: their generated WSGI applications, one per
service path, under the stdlib's threaded server.

Connect unary calls are plain HTTP POSTs, so `wsgiref` (one thread per connection, HTTP/1.0
responses that close the connection) is all the flyte SDK, the `flyte` CLI and our client need.
Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from deployer.controlplane.services import Handlers, wsgi_apps
from deployer.controlplane.store import TaskStore
from deployer.controlplane.task_service import summarize
from deployer.errors import DeployError

log = logging.getLogger("deployer.controlplane.server")

_IDLE_CONNECTION_TIMEOUT_S = 30.0


class ControlPlaneServer:
    """The embedded control plane listening on `host:port` (port 0: a free one, see `.url`)."""

    def __init__(
        self, store: TaskStore, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None
    ) -> None:
        self.store = store
        self.handlers = Handlers.over(store)
        app = _Router(wsgi_apps(self.handlers, [_Observe(api_key)]))
        server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        try:
            self._server = server_class((host, port), _QuietHandler)
        except OSError as exc:
            raise DeployError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.set_app(_logged(app))
        self._thread: threading.Thread | None = None

    @classmethod
    def at(
        cls, state_dir: Path, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None
    ) -> ControlPlaneServer:
        """A server over the control plane state in `state_dir` (created if missing)."""
        return cls(TaskStore(state_dir), host, port, api_key=api_key)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        # shutdown() waits for the next poll: a short one keeps a one-shot CLI deploy from idling at exit.
        self._server.serve_forever(poll_interval=0.02)

    def start(self) -> None:
        """Serve from a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="flyte-deploy-controlplane", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ControlPlaneServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Router:
    """One WSGI application per flyteidl2 service, chosen by the path's service prefix; anything else is
    404, as Connect specifies for an unknown procedure."""

    def __init__(self, apps: dict[str, WSGIApplication]) -> None:
        self._apps = apps

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        prefix = path[: path.index("/", 1) + 1] if path.count("/") >= 2 else path
        app = self._apps.get(prefix)
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can stall for
        # seconds on machines without working reverse DNS; a bound address is all WSGI needs.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.setup_environ()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = _IDLE_CONNECTION_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged once, by `_logged`, with what the RPC did."""


_current = threading.local()


class _Observe:
    """Unary interceptor: optional bearer-token check, and the outcome for the log line."""

    def __init__(self, api_key: str | None) -> None:
        self._expected = f"Bearer {api_key}" if api_key else None

    def intercept_unary_sync(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Any],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any:
        summary = summarize(ctx.method().name, request)
        _current.rpc = f"{summary.method} {summary.subject}".rstrip()
        _current.code = "OK"
        try:
            if self._expected is not None:
                sent = ctx.request_headers().get("authorization", "")
                if not hmac.compare_digest(sent.encode(), self._expected.encode()):
                    raise ConnectError(Code.UNAUTHENTICATED, "missing or wrong bearer token")
            return call_next(request, ctx)
        except ConnectError as exc:
            _current.code = exc.code.name
            _current.detail = exc.message
            raise
        except DeployError as exc:
            _current.code, _current.detail = Code.INTERNAL.name, str(exc)
            raise ConnectError(Code.INTERNAL, str(exc)) from exc
        except Exception as exc:
            # connectrpc answers INTERNAL and writes the traceback to wsgi.errors.
            _current.code, _current.detail = Code.INTERNAL.name, f"{type(exc).__name__}: {exc}"
            raise


def _logged(app: WSGIApplication) -> WSGIApplication:
    def logged_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        _current.rpc = _current.code = _current.detail = None
        environ["wsgi.input"] = _BoundedInput(environ["wsgi.input"], environ.get("CONTENT_LENGTH"))
        started = time.perf_counter()
        status: list[str] = []

        def capture(
            code: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            status.append(code.split(" ", 1)[0])
            return start_response(code, headers, exc_info)

        body = app(environ, capture)
        ms = (time.perf_counter() - started) * 1000
        client = environ.get("REMOTE_ADDR", "-")
        if _current.rpc:
            detail = f": {_current.detail}" if _current.detail and _current.code != "OK" else ""
            log.info("%s %s -> %s%s (%.1f ms)", client, _current.rpc, _current.code, detail, ms)
        else:
            path = environ.get("PATH_INFO", "")
            log.info(
                "%s %s %s -> %s (%.1f ms)",
                client,
                environ.get("REQUEST_METHOD"),
                path,
                status[0] if status else "-",
                ms,
            )
        return body

    return logged_app


class _BoundedInput:
    """`wsgi.input` that ends at Content-Length.

    wsgiref hands the application the raw socket file; connectrpc drains the request body after an
    error, which on a raw socket blocks until the client gives up. Servers like gunicorn or werkzeug
    bound the stream the same way."""

    def __init__(self, stream: Any, content_length: str | None) -> None:
        self._stream = stream
        self._left = int(content_length) if content_length and content_length.isdigit() else 0

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.readline(size)
        self._left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

"""Serving the control plane's flyteidl2 services over HTTP: their generated WSGI applications, one per
service path, under the stdlib's threaded server, plus the few plain-HTTP endpoints Flyte clients use
(signed uploads to file storage, the OAuth2 token endpoint, its keys and metadata).

Connect unary calls are plain HTTP POSTs, so `wsgiref` (one thread per connection, HTTP/1.0
responses that close the connection) is all the flyte SDK, the `flyte` CLI and our client need.
Binds 127.0.0.1 unless told otherwise; HTTPS with `tls=(cert, key)` (the TLS handshake happens in the
connection's thread, so a slow client never holds up others).

What a request goes through, in this order (`_Guard`), before any service code runs:
1. a body without Content-Length (chunked) is refused; one larger than the limit (`Limits`) is refused
   from its Content-Length alone, before a byte of it is read;
2. the bearer token is checked (when auth is configured), from headers alone: a refused caller's body is
   discarded unread-into-memory and never decompressed;
3. a compressed body inflates only up to the same limit (`BoundedGzip`), then the request is refused.
Every log line is one line: request-supplied text is escaped and shortened (`loggable`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from deployer.controlplane.auth import (
    JWKS_PATH,
    METADATA_PATH,
    TOKEN_PATH,
    Auth,
    AuthConfig,
    AuthRefused,
    TokenRefused,
)
from deployer.controlplane.auth_service import SCHEME_HEADER, SUBJECT_HEADER
from deployer.controlplane.blobs import UPLOAD_PATH, Blobs, FileBlobs, UploadRefused
from deployer.controlplane.dataproxy_service import DEFAULT_MAX_UPLOAD_BYTES
from deployer.controlplane.project_service import DEFAULT_PROJECT
from deployer.controlplane.services import Handlers, wsgi_apps
from deployer.controlplane.store import TaskStore
from deployer.controlplane.task_service import summarize
from deployer.errors import DeployError

log = logging.getLogger("deployer.controlplane.server")

_IDLE_CONNECTION_TIMEOUT_S = 30.0
_LISTEN_BACKLOG = 1024
DEFAULT_MAX_REQUEST_BYTES = 8 << 20
"""An RPC request, compressed or not: a TaskSpec is kilobytes; Flyte's own gRPC limit is 4 MiB."""
_MAX_FORM_BYTES = 64 << 10
_LOG_FIELD = 200
# Procedures a client calls before it has a token (the SDK discovers where to get one through these).
_PUBLIC_SERVICES = ("/flyteidl2.auth.AuthMetadataService/",)
_TRUSTED_HEADERS = (
    "HTTP_" + SUBJECT_HEADER.upper().replace("-", "_"),
    "HTTP_" + SCHEME_HEADER.upper().replace("-", "_"),
)


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


class ControlPlaneServer:
    """The embedded control plane listening on `host:port` (port 0: a free one, see `.url`)."""

    def __init__(
        self,
        store: TaskStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        auth: AuthConfig | None = None,
        tls: tuple[Path, Path] | None = None,
        blobs: Blobs | None = None,
        public_url: str | None = None,
        projects: Sequence[str] = (DEFAULT_PROJECT,),
        limits: Limits = Limits(),
        app_url: str | None = None,
    ) -> None:
        self.store = store
        config = auth or AuthConfig()
        if api_key:
            config = AuthConfig(
                api_keys=(*config.api_keys, api_key),
                clients=config.clients,
                issuer=config.issuer,
                audience=config.audience,
            )
        self.auth = Auth(config)
        self.limits = limits
        self.handlers = Handlers.over(
            store,
            blobs=blobs,
            auth=self.auth,
            max_upload_bytes=limits.max_upload_bytes,
            public_url=public_url,
            app_url=app_url,
        )
        self.created_projects = [p for p in projects if self.handlers.projects.ensure(p)]
        self.projects = tuple(projects)
        apps = wsgi_apps(
            self.handlers,
            [_Observe()],
            read_max_bytes=limits.max_request_bytes,
            compressions=[BoundedGzip(limits.max_request_bytes)],
        )
        self.tls = tls is not None
        context = _tls_context(*tls) if tls is not None else None
        server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        try:
            self._server = server_class((host, port), _QuietHandler, tls=context)
        except OSError as exc:
            raise DeployError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        plain = _PlainRoutes(self.auth, self.handlers.dataproxy.blobs, limits)
        self._server.set_app(_logged(_Guard(_Router(apps, plain), self.auth, limits, tls=self.tls)))
        self._thread: threading.Thread | None = None

    @classmethod
    def at(
        cls,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        **options: Any,
    ) -> ControlPlaneServer:
        """A server over the control plane state in `state_dir` (created if missing)."""
        return cls(TaskStore(state_dir), host, port, api_key=api_key, **options)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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
        self.store.close()

    def __enter__(self) -> ControlPlaneServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- transport


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # wsgiref speaks HTTP/1.x only: say so, so HTTP/2-capable clients do not try h2.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise DeployError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from exc
    return context


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    # socketserver's default of 5 pending connections makes clients wait for the kernel's SYN retry
    # (1 s) as soon as a few dozen connect at once; the kernel caps this at net.core.somaxconn.
    request_queue_size = _LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: Any, *, tls: ssl.SSLContext | None) -> None:
        self._tls = tls
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can stall for
        # seconds on machines without working reverse DNS; a bound address is all WSGI needs. What
        # TCPServer.server_bind does besides, it does here: SO_REUSEADDR, so a restart can take the port
        # while connections of the previous process linger in TIME_WAIT.
        if self.allow_reuse_address:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.setup_environ()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self._tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_IDLE_CONNECTION_TIMEOUT_S)
        try:
            # Takes over the socket (the plain one is detached), so it is closed here, not by socketserver.
            secured = self._tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.info("%s TLS handshake failed: %s", client_address[0], loggable(str(exc)))
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            with contextlib.suppress(OSError):
                secured.shutdown(socket.SHUT_WR)
            secured.close()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = _IDLE_CONNECTION_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged once, by `_logged`, with what the RPC did."""


class BoundedGzip:
    """connectrpc's gzip, except that a body inflating past `limit` bytes is refused as soon as it does:
    decompression holds at most `limit` bytes, whatever the ratio of the body."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        parts: list[bytes] = []
        left = self._limit
        rest = bytes(data)
        while rest:  # gzip allows several members back to back
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(rest, left + 1)
            if len(out) > left or inflater.unconsumed_tail:
                raise ValueError(f"the request inflates to more than {self._limit} bytes")
            if not inflater.eof:
                raise ValueError("the request body is a truncated gzip stream")
            parts.append(out)
            left -= len(out)
            rest = inflater.unused_data
        return b"".join(parts)


# ---------------------------------------------------------------------------------------------- routing


_current = threading.local()


class _Guard:
    """Size limits and authentication, from the request line and headers alone (see the module doc)."""

    def __init__(self, app: WSGIApplication, auth: Auth, limits: Limits, *, tls: bool) -> None:
        self._app = app
        self._auth = auth
        self._limits = limits
        self._scheme = "https" if tls else "http"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for trusted in _TRUSTED_HEADERS:
            environ.pop(trusted, None)
        environ[_TRUSTED_HEADERS[1]] = self._scheme
        path = str(environ.get("PATH_INFO", ""))
        raw_length = str(environ.get("CONTENT_LENGTH") or "")
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return _refuse(
                start_response,
                "411 Length Required",
                Code.INVALID_ARGUMENT,
                "a request body needs a Content-Length",
            )
        if raw_length and (not raw_length.isdigit() or len(raw_length) > 15):
            return _refuse(
                start_response, "400 Bad Request", Code.INVALID_ARGUMENT, "Content-Length is not a number"
            )
        length = int(raw_length or 0)
        limit = (
            self._limits.max_upload_bytes if path.startswith(UPLOAD_PATH) else self._limits.max_request_bytes
        )
        if length > limit:
            return _refuse(
                start_response,
                "413 Request Entity Too Large",
                Code.RESOURCE_EXHAUSTED,
                f"request body of {length} bytes exceeds the limit of {limit} bytes",
            )
        environ["wsgi.input"] = _BoundedInput(environ["wsgi.input"], length)
        if self._auth.enabled and _needs_auth(path):
            try:
                identity = self._auth.authenticate(str(environ.get("HTTP_AUTHORIZATION", "")))
            except AuthRefused as exc:
                _discard(environ["wsgi.input"])
                return _refuse(start_response, "401 Unauthorized", Code.UNAUTHENTICATED, str(exc))
            environ[_TRUSTED_HEADERS[0]] = identity.subject or identity.credential
        return self._app(environ, start_response)


def _needs_auth(path: str) -> bool:
    if path.startswith(UPLOAD_PATH) or path in (TOKEN_PATH, JWKS_PATH, METADATA_PATH, "/healthz"):
        return (
            False  # signed URLs carry their own authorization; the rest is what clients need to get a token
        )
    return not path.startswith(_PUBLIC_SERVICES)


def _refuse(start_response: StartResponse, status: str, code: Code, message: str) -> list[bytes]:
    """A Connect error response (JSON body with the code), which Connect clients raise as `ConnectError`."""
    _current.code, _current.detail = code.name, message
    body = json.dumps({"code": code.value, "message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _discard(stream: Any) -> None:
    """Read what the client sends and drop it, so it receives the refusal instead of a connection reset."""
    while stream.read(64 << 10):
        pass


class _Router:
    """One WSGI application per flyteidl2 service, chosen by the path's service prefix; the plain-HTTP
    endpoints by exact path; anything else is 404, as Connect specifies for an unknown procedure."""

    def __init__(self, apps: dict[str, WSGIApplication], plain: _PlainRoutes) -> None:
        self._apps = apps
        self._plain = plain

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        prefix = path[: path.index("/", 1) + 1] if path.count("/") >= 2 else path
        app = self._apps.get(prefix)
        if app is not None:
            return app(environ, start_response)
        return self._plain(environ, start_response)


class _PlainRoutes:
    def __init__(self, auth: Auth, blobs: Blobs, limits: Limits) -> None:
        self._auth = auth
        self._blobs = blobs
        self._limits = limits

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", ""))
        if path.startswith(UPLOAD_PATH) and isinstance(self._blobs, FileBlobs):
            if method != "PUT":
                return _text(start_response, "405 Method Not Allowed", "PUT only")
            return self._upload(environ, start_response)
        if path == TOKEN_PATH and method == "POST":
            return self._token(environ, start_response)
        if path == JWKS_PATH and method == "GET":
            return _json(start_response, "200 OK", self._auth.jwks())
        if path == METADATA_PATH and method == "GET":
            try:
                document = self._auth.oauth2_metadata(_base_url(environ))
            except AuthRefused as exc:
                return _text(start_response, "502 Bad Gateway", str(exc))
            if document is None:
                return _text(
                    start_response, "404 Not Found", "this control plane issues and trusts no tokens"
                )
            return _json(start_response, "200 OK", document)
        if path == "/healthz" and method == "GET":
            return _text(start_response, "200 OK", "ok")
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    def _upload(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert isinstance(self._blobs, FileBlobs)
        stream = environ["wsgi.input"]
        try:
            native = self._blobs.receive(
                str(environ.get("PATH_INFO", "")),
                str(environ.get("QUERY_STRING", "")),
                content_md5=str(environ.get("HTTP_CONTENT_MD5", "")),
                length=int(environ.get("CONTENT_LENGTH") or 0),
                body=stream,
                max_bytes=self._limits.max_upload_bytes,
            )
        except UploadRefused as exc:
            _discard(stream)
            _current.detail = exc.reason
            return _text(
                start_response,
                exc.status,
                f"<Error><Code>{exc.reason.split(':')[0]}</Code>{exc.reason}</Error>",
            )
        _current.detail = native
        return _text(start_response, "200 OK", "")

    def _token(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > _MAX_FORM_BYTES:
            return _json(start_response, "413 Request Entity Too Large", {"error": "invalid_request"})
        form = dict(urllib.parse.parse_qsl(environ["wsgi.input"].read(length).decode(errors="replace")))
        try:
            document = self._auth.issue_token(
                form, str(environ.get("HTTP_AUTHORIZATION", "")), _base_url(environ)
            )
        except TokenRefused as exc:
            _current.detail = exc.description
            return _json(
                start_response, exc.status, {"error": exc.error, "error_description": exc.description}
            )
        return _json(start_response, "200 OK", document, no_store=True)


def _base_url(environ: WSGIEnvironment) -> str:
    scheme = str(environ.get(_TRUSTED_HEADERS[1], "http"))
    host = str(environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}")
    return f"{scheme}://{host}"


def _json(
    start_response: StartResponse, status: str, document: Any, *, no_store: bool = False
) -> list[bytes]:
    body = json.dumps(document).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if no_store:
        headers.append(("Cache-Control", "no-store"))
    start_response(status, headers)
    return [body]


def _text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# ---------------------------------------------------------------------------------------------- logging


class _Observe:
    """Unary interceptor: the outcome for the log line."""

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


_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def loggable(text: str, limit: int = _LOG_FIELD) -> str:
    """`text` as one bounded log field: control characters escaped (no forged lines), at most `limit`
    characters of it kept (no amplification by request content)."""
    shown = text[:limit].translate(_ESCAPES)
    return shown if len(text) <= limit else f"{shown}…(+{len(text) - limit} chars)"


def _logged(app: WSGIApplication) -> WSGIApplication:
    def logged_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        _current.rpc = _current.code = _current.detail = None
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
        detail = f": {loggable(str(_current.detail))}" if _current.detail and _current.code != "OK" else ""
        if _current.rpc:
            log.info("%s %s -> %s%s (%.1f ms)", client, loggable(_current.rpc), _current.code, detail, ms)
        else:
            path = loggable(str(environ.get("PATH_INFO", "")), 120)
            method = loggable(str(environ.get("REQUEST_METHOD", "")), 10)
            outcome = status[0] if status else "-"
            log.info("%s %s %s -> %s%s (%.1f ms)", client, method, path, outcome, detail, ms)
        return body

    return logged_app


class _BoundedInput:
    """`wsgi.input` that ends at Content-Length.

    wsgiref hands the application the raw socket file; connectrpc drains the request body after an
    error, which on a raw socket blocks until the client gives up. Servers like gunicorn or werkzeug
    bound the stream the same way."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.readline(size)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

"""`flyte-deploy serve`: the embedded control plane as a long-running server."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from deployer.controlplane.auth import AuthConfig
from deployer.errors import UsageError
from deployer.settings import Settings, load_settings, option_info


def _env(name: str) -> str:
    return option_info(name).env[0]


HostOpt = Annotated[
    str,
    typer.Option("--host", help="Address to listen on. Anything but loopback must be asked for explicitly."),
]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")]
ServeStateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"Where the control plane keeps its SQLite state (env {_env('state_dir')}; "
        "default: ./.flyte-deploy).",
    ),
]
ServeApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help=f"Accept `authorization: Bearer KEY` (env {_env('serve_api_key')}).",
        show_default=False,
    ),
]
ClientIdOpt = Annotated[
    str | None,
    typer.Option(
        "--client-id",
        help="Issue OAuth2 tokens to this client (client-credentials grant, with the secret from "
        f"{_env('serve_client_secret')}); a Flyte API key for it is base64 of "
        "HOST:CLIENT_ID:CLIENT_SECRET:None.",
        show_default=False,
    ),
]
IssuerOpt = Annotated[
    str | None,
    typer.Option(
        "--auth-issuer",
        help="Accept tokens of this OAuth2/OIDC issuer (checked through its JWKS; "
        f"env {_env('serve_auth_issuer')}).",
        show_default=False,
    ),
]
AudienceOpt = Annotated[
    str | None,
    typer.Option("--auth-audience", help="The audience tokens must name.", show_default=False),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        help="Serve HTTPS with this certificate chain (PEM), with --tls-key.",
        show_default=False,
    ),
]
TlsKeyOpt = Annotated[
    Path | None, typer.Option("--tls-key", help="TLS private key (PEM).", show_default=False)
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Where uploads (code bundles) go: file://DIR (default STATE_DIR/bundles, uploaded through this "
        "server) or s3://BUCKET/PREFIX (presigned URLs).",
        show_default=False,
    ),
]
ProjectsOpt = Annotated[
    list[str] | None,
    typer.Option("--project", help="A project to have from the start (repeatable; default flytesnacks)."),
]
PublicUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--public-url",
        help="The URL clients reach this server at (default: the Host each request names).",
        show_default=False,
    ),
]


def command(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8090,
    state_dir: ServeStateDirOpt = None,
    api_key: ServeApiKeyOpt = None,
    client_id: ClientIdOpt = None,
    auth_issuer: IssuerOpt = None,
    auth_audience: AudienceOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    storage: StorageOpt = None,
    projects: ProjectsOpt = None,
    public_url: PublicUrlOpt = None,
) -> None:
    """Serve a Flyte 2 control plane until Ctrl-C or SIGTERM: flyteidl2 TaskService, TriggerService,
    AppService, ProjectService, DataProxyService (uploads), ClusterService, AuthMetadataService and
    IdentityService. The `flyte` CLI and SDK can use it: --endpoint dns:///HOST:PORT (--insecure without
    TLS). Apps' reported URLs follow the app_url setting (README: Configuration)."""
    from deployer.controlplane.blobs import open_blobs
    from deployer.controlplane.server import ControlPlaneServer, Limits

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 0 and 65535")
    settings = load_settings(
        {
            "state_dir": state_dir,
            "serve_api_key": api_key,
            "serve_client_id": client_id,
            "serve_auth_issuer": auth_issuer,
            "serve_auth_audience": auth_audience,
            "serve_tls_cert": tls_cert,
            "serve_tls_key": tls_key,
            "serve_storage": storage,
            "serve_projects": tuple(projects) if projects else None,
            "serve_public_url": public_url,
        }
    )
    auth = _auth_config(settings)
    tls = _tls(settings.serve_tls_cert, settings.serve_tls_key)
    blobs = open_blobs(settings.serve_storage) if settings.serve_storage else None
    _configure_request_log()
    server = ControlPlaneServer.at(
        settings.state,
        host,
        port,
        auth=auth,
        tls=tls,
        blobs=blobs,
        public_url=settings.serve_public_url,
        app_url=settings.app_url,
        projects=settings.serve_projects,
        limits=Limits(
            max_request_bytes=settings.serve_max_request_bytes,
            max_upload_bytes=settings.serve_max_upload_bytes,
        ),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    address = server.url.split("://", 1)[1]
    typer.echo(f"flyte-deploy control plane listening on {server.url} (state: {server.store.path})")
    typer.echo(f"flyte CLI/SDK endpoint: dns:///{address}{'' if server.tls else ' --insecure'}")
    typer.echo(
        f"projects: {', '.join(server.projects)}; uploads: {server.handlers.dataproxy.blobs.url}; "
        f"auth: {auth.describe()}",
        err=True,
    )
    if auth.enabled and not server.tls:
        typer.echo(
            "warning: auth without TLS: the flyte SDK authenticates only over HTTPS (--tls-cert/--tls-key), "
            "and tokens cross the network in clear",
            err=True,
        )
    if not _is_loopback(server.host):
        state = (
            "authentication required" if auth.enabled else "NO authentication (pass --api-key or --client-id)"
        )
        typer.echo(f"warning: {server.host} is reachable from other machines; {state}", err=True)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        typer.echo("control plane stopped", err=True)


def _auth_config(settings: Settings) -> AuthConfig:
    keys = (settings.serve_api_key.get_secret_value(),) if settings.serve_api_key else ()
    clients: dict[str, str] = {}
    if settings.serve_client_id:
        if settings.serve_client_secret is None:
            raise UsageError(
                f"--client-id {settings.serve_client_id}: set its secret in {_env('serve_client_secret')}"
            )
        clients[settings.serve_client_id] = settings.serve_client_secret.get_secret_value()
    elif settings.serve_client_secret is not None:
        raise UsageError(f"{_env('serve_client_secret')} is set, but no --client-id names its client")
    return AuthConfig(
        api_keys=keys,
        clients=clients,
        issuer=settings.serve_auth_issuer,
        audience=settings.serve_auth_audience,
    )


def _tls(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return None
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(f"{flag} {str(path)!r}: no such file")
    return cert, key


def _configure_request_log() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log = logging.getLogger("deployer.controlplane.server")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

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

from deployer.errors import UsageError
from deployer.settings import load_settings, option_info

HostOpt = Annotated[
    str,
    typer.Option("--host", help="Address to listen on. Anything but loopback must be asked for explicitly."),
]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")]
ServeStateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"Where the control plane keeps its SQLite state (env {option_info('state_dir').env[0]}; "
        "default: ./.flyte-deploy).",
    ),
]
ServeApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="Require `authorization: Bearer KEY` on every request "
        f"(env {option_info('serve_api_key').env[0]}).",
        show_default=False,
    ),
]


def command(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8090,
    state_dir: ServeStateDirOpt = None,
    api_key: ServeApiKeyOpt = None,
) -> None:
    """Serve flyteidl2 TaskService (DeployTask, GetTaskDetails, ListTasks, ListVersions) until
    Ctrl-C or SIGTERM. The `flyte` CLI and SDK can use it: --endpoint dns:///HOST:PORT --insecure."""
    from deployer.controlplane.server import ControlPlaneServer

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 0 and 65535")
    settings = load_settings({"state_dir": state_dir, "serve_api_key": api_key})
    api_key = settings.serve_api_key.get_secret_value() if settings.serve_api_key else None
    state = settings.state
    _configure_request_log()
    server = ControlPlaneServer.at(state, host, port, api_key=api_key)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    typer.echo(f"flyte-deploy control plane listening on {server.url} (state: {server.store.path})")
    typer.echo(f"flyte CLI/SDK endpoint: dns:///{server.url.removeprefix('http://')} --insecure")
    if not _is_loopback(server.host):
        auth = "bearer token required" if api_key else "NO authentication (pass --api-key)"
        typer.echo(f"warning: {server.host} is reachable from other machines; {auth}", err=True)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        typer.echo("control plane stopped", err=True)


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

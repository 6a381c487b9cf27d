"""Where a registry named by a loopback address really is, seen from this process.

The Docker engine runs on the runner host, so it pushes to `localhost:5000` there. GitHub runs a
container action on a bridge network, where `localhost` is the container itself: the registry API calls
this process makes (manifest lookups, tags, the appended code layer) would go nowhere. A registry
published on the host (a `services:` port, `docker run -p`) is still reached through the bridge's
gateway, the host seen from the container; one bound to the host's 127.0.0.1 alone is not reachable
from here at all, and that is one clear error before anything is built.
"""

from __future__ import annotations

import functools
import socket
import struct
from pathlib import Path

from deployer.errors import RegistryError

_CONNECT_TIMEOUT_S = 2.0


def is_loopback(host: str) -> bool:
    hostname = _hostname(host)
    return hostname in ("localhost", "::1") or hostname.startswith("127.")


@functools.cache
def route(host: str) -> str:
    """`host` (`name[:port]`) as this process can reach it: itself, or the container's gateway with
    the same port. A loopback registry reachable neither way is a `RegistryError` saying what to do."""
    if not is_loopback(host) or _answers(_hostname(host), _port(host)):
        return host
    gateway = _default_gateway() if in_container() else None
    if gateway is not None and _answers(gateway, _port(host)):
        return f"{gateway}:{_port(host)}"
    where = (
        "this container runs on a bridge network (as GitHub runs container actions), where "
        f"{_hostname(host)} is the container itself"
        if in_container()
        else "nothing listens there"
    )
    raise RegistryError(
        f"registry {host} cannot be reached from flyte-deploy: {where}, and the Docker host does not "
        f"publish port {_port(host)} either. Name the registry by an address the job reaches: a "
        "`services:` registry by its service name (e.g. registry:5000), the runner host's IP, or a "
        "hosted registry"
    )


def in_container() -> bool:
    if Path("/.dockerenv").exists():
        return True
    try:
        return any(
            word in Path("/proc/1/cgroup").read_text() for word in ("docker", "containerd", "kubepods")
        )
    except OSError:
        return False


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _default_gateway() -> str | None:
    """The IPv4 default route's gateway (the host, from a container on a bridge)."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.split("]")[0][1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _port(host: str) -> int:
    if host.startswith("[") and "]:" in host:
        return int(host.rsplit(":", 1)[1])
    if host.count(":") == 1:
        return int(host.rsplit(":", 1)[1])
    return 80

"""Container mode: run the task inside its deployed image with the Docker engine."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from deployer.errors import RunError
from deployer.runner.action import ActionDir


def run_in_image(
    image: str,
    args: Sequence[str],
    env: dict[str, str],
    action: ActionDir,
    *,
    working_dir: str | None = None,
    files: Mapping[PurePosixPath, str] | None = None,
    on_exit: Callable[[Any], None] | None = None,
) -> int:
    """Run `args` in `image` (pulled if missing) with the action dir mounted at the same path;
    `on_exit(container)` runs once the task ended, before the container is removed.

    `files` (absolute paths in the container, e.g. file secrets) are written into the container before it
    starts, so they never touch the host's disk. Host networking lets the task reach services bound to
    127.0.0.1 (local registry, S3, control plane), as the tests' stack requires. Returns the container's
    exit code; logs go to `action.log`.
    """
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise RunError(
            f"the task was deployed in container mode (code in image {image}); running it needs a "
            f"Docker engine and none answers ({_first_line(exc)}). Set DOCKER_HOST or start one"
        ) from exc
    try:
        try:
            client.images.get(image)
        except ImageNotFound:
            client.images.pull(image)
        container = client.containers.create(
            image,
            command=list(args),
            environment=env,
            network_mode="host",
            working_dir=working_dir,
            volumes={str(action.root): {"bind": str(action.root), "mode": "rw"}},
        )
    except DockerException as exc:
        raise RunError(f"cannot start the task's image {image}: {_first_line(exc)}") from exc
    try:
        if files:
            container.put_archive("/", _archive(files))
        container.start()
        status = container.wait()
        action.log.write_bytes(container.logs(stdout=True, stderr=True))
        if on_exit is not None:
            on_exit(container)
        return int(status.get("StatusCode", 1))
    except APIError as exc:
        raise RunError(f"the task's container in {image} failed: {_first_line(exc)}") from exc
    finally:
        container.remove(force=True)


def _archive(files: Mapping[PurePosixPath, str]) -> bytes:
    """A tar of `files` relative to `/`, with their directories: readable by any user of the image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dirs = sorted({parent for path in files for parent in path.parents if parent != PurePosixPath("/")})
        for directory in dirs:
            tar.addfile(_member(directory, tarfile.DIRTYPE, 0o755))
        for path, text in files.items():
            data = text.encode()
            tar.addfile(_member(path, tarfile.REGTYPE, 0o444, size=len(data)), io.BytesIO(data))
    return buffer.getvalue()


def _member(path: PurePosixPath, kind: Any, mode: int, *, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(str(path.relative_to("/")))
    info.type, info.mode, info.size = kind, mode, size
    return info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""Builds and pushes through the Docker engine in `DOCKER_HOST` (docker-py, legacy builder).

Builds run with host networking, so a build reaches registries and package indexes bound to the
host's loopback exactly like the host does. Logs stream behind a rich progress display (one row per
image, showing the current Dockerfile step); a failed build raises `BuildError` with the failing
step and the last lines of its log, and prints a longer tail to the console first.
"""

from __future__ import annotations

import collections
import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from deployer.errors import BuildError
from deployer.images.auth import Credentials
from deployer.images.render import RenderedImage

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_LINES = 40
ERROR_TAIL_LINES = 5
PUSH_ATTEMPTS = 3
PUSH_BACKOFF_S = 1.0
# Retrying cannot fix these: wrong credentials, no permission, a name or manifest the registry refuses.
_PERMANENT_PUSH_ERROR = re.compile(
    r"unauthorized|denied|authentication required|forbidden|name unknown|name invalid|manifest invalid", re.I
)


@dataclass(frozen=True)
class BuildJob:
    label: str
    """Shown in the progress display and in errors (the environment names)."""
    rendered: RenderedImage
    reference: str
    """`repo:identity`, the tag the engine gives the result."""
    labels: dict[str, str]
    """OCI labels; kept out of the identity (they describe provenance, not content)."""


class DockerBuilder:
    def __init__(self, *, console: Console | None = None, credentials: Credentials | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._credentials = credentials or Credentials()
        try:
            self._client = docker.from_env(timeout=1800)
            self._client.ping()
        except docker.errors.DockerException as exc:
            raise BuildError(f"cannot reach the Docker engine (DOCKER_HOST): {exc}") from exc
        self._logged_in: set[str] = set()

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            yield progress

    # ------------------------------------------------------------------------------------------ images

    def image_id(self, reference: str) -> str | None:
        try:
            return str(self._client.api.inspect_image(reference)["Id"])
        except docker.errors.ImageNotFound:
            return None

    def layers(self, reference: str) -> tuple[str, ...]:
        """Uncompressed layer digests (diff IDs) of a local image, base first."""
        return tuple(self._client.api.inspect_image(reference)["RootFS"]["Layers"])

    def tag(self, reference: str, repository: str, tag: str) -> None:
        self._client.api.tag(reference, repository, tag=tag)

    def build(self, job: BuildJob, progress: Progress) -> str:
        """Build `job` and tag it `job.reference`; returns the engine's image ID."""
        self._login_for(job.rendered.base)
        task = progress.add_task(f"{job.label}: starting", total=None)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        step = ""
        image_id: str | None = None
        try:
            stream = self._client.api.build(
                fileobj=io.BytesIO(job.rendered.context.tar_bytes()),
                custom_context=True,
                dockerfile=job.rendered.dockerfile_path,
                tag=job.reference,
                labels=job.labels,
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                image_id = self._consume(chunk, job, progress, task, tail) or image_id
                if "error" in chunk:
                    self._fail(job, step, str(chunk["error"]).strip(), tail)
                match = _STEP.match(str(chunk.get("stream", "")).strip())
                if match:
                    step = match.group(0)
        except docker.errors.APIError as exc:
            self._fail(job, step, exc.explanation or str(exc), tail)
        progress.update(task, description=f"{job.label}: built")
        return image_id or str(self._client.api.inspect_image(job.reference)["Id"])

    def push(self, repository: str, tag: str, label: str, progress: Progress) -> None:
        """Push `repository:tag`, retrying a failed push a bounded number of times: the engine retries
        layer uploads itself, but not the manifest, the last and smallest request of a push. Layers
        that already landed are skipped by the next attempt."""
        host = repository.split("/", 1)[0]
        credential = self._credentials.for_host(host)
        auth = credential.engine_auth() if credential else None
        task = progress.add_task(f"{label}: pushing {repository}:{tag}", total=None)
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            error = self._push_once(repository, tag, auth)
            if error is None:
                progress.update(task, description=f"{label}: pushed {repository}:{tag}", completed=1, total=1)
                return
            if attempt == PUSH_ATTEMPTS or _PERMANENT_PUSH_ERROR.search(error):
                tried = f" (tried {attempt} times)" if attempt > 1 else ""
                raise BuildError(f"push of {repository}:{tag} failed: {error}{tried}")
            delay = PUSH_BACKOFF_S * 2 ** (attempt - 1)
            progress.update(task, description=f"{label}: push failed, retrying in {delay:.0f}s: {error[:60]}")
            time.sleep(delay)

    def _push_once(self, repository: str, tag: str, auth: dict[str, str] | None) -> str | None:
        """The engine's error message, or None when the push succeeded."""
        try:
            stream = self._client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth)
            for chunk in stream:
                if "error" in chunk:
                    return str(chunk["error"]).strip()
        except docker.errors.APIError as exc:
            return str(exc.explanation or exc)
        return None

    # ------------------------------------------------------------------------------------------ internals

    def _consume(
        self,
        chunk: dict[str, Any],
        job: BuildJob,
        progress: Progress,
        task: TaskID,
        tail: collections.deque[str],
    ) -> str | None:
        text = _ANSI.sub("", str(chunk.get("stream") or chunk.get("status") or ""))
        for line in text.splitlines():
            if line.strip():
                tail.append(line.rstrip())
        match = _STEP.match(text.strip())
        if match:
            number, total, instruction = match.groups()
            short = instruction if len(instruction) <= 60 else instruction[:57] + "..."
            progress.update(
                task, description=f"{job.label}: {short}", completed=int(number) - 1, total=int(total)
            )
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            progress.update(task, completed=progress.tasks[task].total or 0)
            return str(aux["ID"])
        return None

    def _fail(self, job: BuildJob, step: str, error: str, tail: collections.deque[str]) -> None:
        self.console.print(f"[red]build of {job.label} failed[/red]; last {len(tail)} log lines:")
        for line in tail:
            self.console.print(f"  {line}", markup=False, highlight=False)
        last = " | ".join(line.strip() for line in list(tail)[-ERROR_TAIL_LINES:])
        where = f" at {step}" if step else ""
        raise BuildError(f"image build for {job.label} failed{where}: {error} (log tail: {last})")

    def _login_for(self, reference: str | None) -> None:
        """The legacy builder pulls FROM images with the client's auth: give it what docker-py lacks."""
        if not reference or "/" not in reference:
            return
        host = reference.split("/", 1)[0]
        if host in self._logged_in or ("." not in host and ":" not in host and host != "localhost"):
            return
        credential = self._credentials.for_host(host)
        if credential is not None and not credential.identity_token:
            try:
                self._client.login(
                    credential.username, credential.password.get_secret_value(), registry=host, reauth=True
                )
            except docker.errors.APIError as exc:
                raise BuildError(f"Docker engine login to {host} failed: {exc.explanation or exc}") from exc
        self._logged_in.add(host)

"""Builds and pushes through the Docker engine in `DOCKER_HOST`.

Two builders share one engine client (docker-py) for tags, pulls and pushes:
- `DockerBuilder` builds through the engine API's classic builder (what docker-py speaks);
- `BuildKitBuilder` builds through a Docker CLI with BuildKit (`docker buildx build`, or a CLI before
  23.0 with `DOCKER_BUILDKIT=1`): cache mounts, secret mounts, and an inline layer cache in every
  pushed image, so a fresh runner reuses the previous image's layers from the registry.
`open_builder` picks one. Builds run with host networking, so a build reaches registries and
package indexes bound to the host's loopback exactly like the host does. The build context is
streamed from the renderer, never held in memory. A failed build raises `BuildError` with the
failing step and the last lines of its log.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from deployer.errors import BuildError
from deployer.images.auth import Credentials, docker_config_path
from deployer.images.render import RenderedImage
from deployer.progress import QUIET, Advance, Progress

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BK_STEP = re.compile(r"^#(\d+) \[(?:[^\]]*?\s)?(\d+)/(\d+)\] (.*)$")
_BK_EXIT = re.compile(r"exit code: (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_LINES = 40
ERROR_TAIL_LINES = 5
PUSH_ATTEMPTS = 3
PUSH_BACKOFF_S = 1.0
BUILDKIT_CLI_BEFORE = 23
"""Docker CLIs before 23.0 build with BuildKit themselves under DOCKER_BUILDKIT=1; later ones need buildx."""
# Retrying cannot fix these: wrong credentials, no permission, a name or manifest the registry refuses.
_PERMANENT_PUSH_ERROR = re.compile(
    r"unauthorized|denied|authentication required|forbidden|name unknown|name invalid|manifest invalid", re.I
)


@dataclass(frozen=True)
class BuildJob:
    label: str
    """Shown in progress and in errors (the environment names)."""
    rendered: RenderedImage
    reference: str
    """`repo:identity`, the tag the engine gives the result."""
    labels: dict[str, str]
    """OCI labels; kept out of the identity (they describe provenance, not content)."""
    cache_from: tuple[str, ...] = ()
    """Images (pushed by earlier builds) whose layers a step may reuse instead of running."""


@dataclass
class _Log:
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    step: str = ""

    def add(self, text: str) -> None:
        for line in _ANSI.sub("", text).splitlines():
            if line.strip():
                self.tail.append(line.rstrip())


class DockerBuilder:
    """Builds with the engine API's classic builder; tags, pulls and pushes for every builder."""

    kind = "engine"

    def __init__(self, *, credentials: Credentials | None = None, progress: Progress = QUIET) -> None:
        self.progress = progress
        self._credentials = credentials or Credentials()
        try:
            self._client = docker.from_env(timeout=1800)
            self._client.ping()
        except docker.errors.DockerException as exc:
            raise BuildError(f"cannot reach the Docker engine (DOCKER_HOST): {exc}") from exc
        self._logged_in: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    @property
    def _api(self) -> Any:
        # docker-py's low-level API is untyped where the stubs lag; the engine's JSON is read as such.
        return self._client.api

    # ------------------------------------------------------------------------------------------ images

    def image_id(self, reference: str) -> str | None:
        try:
            return str(self._api.inspect_image(reference)["Id"])
        except docker.errors.ImageNotFound:
            return None

    def layers(self, reference: str) -> tuple[str, ...]:
        """Uncompressed layer digests (diff IDs) of a local image, base first."""
        return tuple(self._api.inspect_image(reference)["RootFS"]["Layers"])

    def tag(self, reference: str, repository: str, tag: str) -> None:
        self._client.api.tag(reference, repository, tag=tag)

    def pull(self, reference: str) -> bool:
        """Pull `reference` into the engine; False when the registry does not have it."""
        repository, _, tag = reference.rpartition(":") if "@" not in reference else (reference, "", "")
        auth = self._auth_for(reference)
        try:
            for chunk in self._client.api.pull(
                repository, tag=tag or None, stream=True, decode=True, auth_config=auth
            ):
                if "error" in chunk:
                    return False
        except docker.errors.APIError:
            return False
        return True

    def build(self, job: BuildJob) -> None:
        """Build `job` and tag it `job.reference`."""
        if job.rendered.dockerfile is None:
            names = ", ".join(s.id for s in job.rendered.secrets)
            raise BuildError(
                f"image build for {job.label}: its layers mount secrets ({names}), which need BuildKit "
                "(RUN --mount=type=secret); the Docker engine API builder has no secret mounts. Use a "
                "Docker CLI with BuildKit (image_builder=buildkit)"
            )
        self._login_for(job.rendered.base)
        # The classic builder reuses layers only from images in the engine: fetch the cache first.
        cache_from = [ref for ref in job.cache_from if self.image_id(ref) or self.pull(ref)]
        log = _Log()
        with self.progress.bar(f"{job.label}: build", None) as advance:
            try:
                stream = self._api.build(
                    # Streamed: requests sends an iterable body chunk by chunk, never all in memory.
                    fileobj=job.rendered.context.chunks(),
                    custom_context=True,
                    dockerfile=job.rendered.dockerfile_path,
                    tag=job.reference,
                    labels=job.labels,
                    network_mode="host",
                    cache_from=cache_from or None,
                    rm=True,
                    forcerm=True,
                    decode=True,
                )
                for chunk in stream:
                    text = str(chunk.get("stream") or chunk.get("status") or "")
                    log.add(text)
                    match = _STEP.match(text.strip())
                    if match:
                        log.step = match.group(0)
                        advance(1)
                    if "error" in chunk:
                        self._fail(job, log, str(chunk["error"]).strip())
            except docker.errors.APIError as exc:
                self._fail(job, log, exc.explanation or str(exc))
        if self.image_id(job.reference) is None:
            self._fail(job, log, "the engine reported no image")

    def push(self, repository: str, tag: str, label: str) -> None:
        """Push `repository:tag`, retrying a failed push a bounded number of times: the engine retries
        layer uploads itself, but not the manifest, the last and smallest request of a push. Layers
        that already landed are skipped by the next attempt."""
        auth = self._auth_for(repository)
        with self.progress.bar(f"{label}: push {repository}:{tag}", 1) as advance:
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                error = self._push_once(repository, tag, auth)
                if error is None:
                    advance(1)
                    return
                if attempt == PUSH_ATTEMPTS or _PERMANENT_PUSH_ERROR.search(error):
                    tried = f" (tried {attempt} times)" if attempt > 1 else ""
                    raise BuildError(f"push of {repository}:{tag} failed: {error}{tried}")
                delay = PUSH_BACKOFF_S * 2 ** (attempt - 1)
                self.progress.warning(f"{label}: push failed, retrying in {delay:.0f}s: {error[:60]}")
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

    def _auth_for(self, reference: str) -> dict[str, str] | None:
        credential = self._credentials.for_host(reference.split("/", 1)[0])
        return credential.engine_auth() if credential else None

    def _fail(self, job: BuildJob, log: _Log, error: str) -> None:
        self.progress.warning(f"build of {job.label} failed; last {len(log.tail)} log lines:")
        for line in log.tail:
            self.progress.info(f"  {line}")
        last = " | ".join(line.strip() for line in list(log.tail)[-ERROR_TAIL_LINES:])
        where = f" at {log.step}" if log.step else ""
        raise BuildError(f"image build for {job.label} failed{where}: {error} (log tail: {last})")

    def _login_for(self, reference: str | None) -> None:
        """The legacy builder pulls FROM images with the client's auth: give it what docker-py lacks."""
        if not reference or "/" not in reference:
            return
        host = reference.split("/", 1)[0]
        with self._lock:
            if host in self._logged_in or ("." not in host and ":" not in host and host != "localhost"):
                return
            credential = self._credentials.for_host(host)
            if credential is not None and not credential.identity_token:
                try:
                    self._client.login(
                        credential.username,
                        credential.password.get_secret_value(),
                        registry=host,
                        reauth=True,
                    )
                except docker.errors.APIError as exc:
                    raise BuildError(
                        f"Docker engine login to {host} failed: {exc.explanation or exc}"
                    ) from exc
            self._logged_in.add(host)


class BuildKitBuilder(DockerBuilder):
    """Builds with BuildKit through a Docker CLI (the engine API alone cannot drive BuildKit's session)."""

    kind = "buildkit"

    def __init__(
        self, cli: BuildKitCli, *, credentials: Credentials | None = None, progress: Progress = QUIET
    ) -> None:
        super().__init__(credentials=credentials, progress=progress)
        self.cli = cli

    def build(self, job: BuildJob) -> None:
        rendered = job.rendered
        command = [*self.cli.build_command, "--progress=plain", "--network", "host"]
        command += ["-f", rendered.buildkit_dockerfile_path, "-t", job.reference]
        # Every image carries its layer cache in its config: the next build anywhere can start from it.
        command += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        for key, value in sorted(job.labels.items()):
            command += ["--label", f"{key}={value}"]
        for ref in job.cache_from:
            command += ["--cache-from", ref]
        command += self._secret_flags(job)
        command.append("-")
        log = _Log()
        with self._docker_config() as config_dir, self.progress.bar(f"{job.label}: build", None) as advance:
            env = {**os.environ, **self.cli.env}
            if config_dir:
                env["DOCKER_CONFIG"] = config_dir
            code = self._run(command, env, rendered, log, advance)
        if code != 0:
            error = next((line for line in reversed(log.tail) if "ERROR" in line or "error" in line), "")
            exit_code = _BK_EXIT.search(error)
            message = f"The step returned a non-zero code: {exit_code.group(1)}" if exit_code else error
            self._fail(job, log, message or f"{self.cli.path} build exited with {code}")

    def _run(
        self, command: list[str], env: dict[str, str], rendered: RenderedImage, log: _Log, advance: Advance
    ) -> int:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        assert process.stdin is not None and process.stdout is not None
        feeder_error: list[BaseException] = []

        def feed() -> None:
            assert process.stdin is not None
            try:
                for chunk in rendered.context.chunks():
                    process.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the CLI stopped reading: its exit code and log say why
            except BaseException as exc:  # a file of the context changed: report it, stop the build
                feeder_error.append(exc)
                process.kill()
            finally:
                with contextlib.suppress(OSError):
                    process.stdin.close()

        feeder = threading.Thread(target=feed, name="build-context", daemon=True)
        feeder.start()
        steps: set[str] = set()
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            log.add(line)
            match = _BK_STEP.match(_ANSI.sub("", line))
            if match and match.group(1) not in steps:
                steps.add(match.group(1))
                log.step = f"Step {match.group(2)}/{match.group(3)} : {match.group(4)}"
                advance(1)
        code = process.wait()
        feeder.join()
        if feeder_error:
            raise feeder_error[0]
        return code

    def _secret_flags(self, job: BuildJob) -> list[str]:
        flags: list[str] = []
        for secret in job.rendered.secrets:
            if os.environ.get(secret.env_var):
                flags += ["--secret", f"id={secret.id},env={secret.env_var}"]
            elif Path(secret.file).is_file():
                flags += ["--secret", f"id={secret.id},src={secret.file}"]
            else:
                raise BuildError(
                    f"image build for {job.label}: secret {secret.id!r} is in neither the environment "
                    f"variable {secret.env_var} nor the file {secret.file}"
                )
        return flags

    @contextlib.contextmanager
    def _docker_config(self) -> Iterator[str | None]:
        """A private Docker config holding the explicit credentials, for the CLI's BuildKit session
        (base-image pulls and cache imports); None when there are none (the user's config applies)."""
        explicit = self._credentials.explicit
        if not explicit:
            yield None
            return
        source = docker_config_path()
        config: dict[str, Any] = {}
        if source.is_file():
            with contextlib.suppress(OSError, ValueError):
                config = json.loads(source.read_text(encoding="utf-8"))
        auths = dict(config.get("auths") or {})
        helpers = dict(config.get("credHelpers") or {})
        for host, credential in explicit.items():
            pair = f"{credential.username}:{credential.password.get_secret_value()}"
            auths[host] = {"auth": base64.b64encode(pair.encode()).decode()}
            helpers.pop(host, None)
        # A credential store would shadow the auths written here; explicit credentials win.
        config = {**config, "auths": auths, "credHelpers": helpers}
        config.pop("credsStore", None)
        with tempfile.TemporaryDirectory(prefix="flyte-deploy-docker-") as directory:
            path = Path(directory) / "config.json"
            path.write_text(json.dumps(config), encoding="utf-8")
            path.chmod(0o600)
            yield directory


@dataclass(frozen=True)
class BuildKitCli:
    path: str
    build_command: tuple[str, ...]
    env: dict[str, str]


def find_buildkit_cli(explicit: str | None = None) -> BuildKitCli | None:
    """A Docker CLI that builds with BuildKit: `docker buildx`, or a CLI older than 23 (built-in client)."""
    candidates: Sequence[str | None] = (
        (explicit,) if explicit else (shutil.which("docker"), "/usr/bin/docker")
    )
    for candidate in dict.fromkeys(c for c in candidates if c):
        if not Path(candidate).is_file() or not os.access(candidate, os.X_OK):
            continue
        if _succeeds([candidate, "buildx", "version"]):
            return BuildKitCli(candidate, (candidate, "buildx", "build", "--load"), {})
        version = _output([candidate, "version", "--format", "{{.Client.Version}}"])
        major = version.split(".", 1)[0]
        if major.isdigit() and int(major) < BUILDKIT_CLI_BEFORE:
            return BuildKitCli(candidate, (candidate, "build"), {"DOCKER_BUILDKIT": "1"})
    return None


def open_builder(
    builder: str, *, docker_cli: str | None, credentials: Credentials, progress: Progress
) -> DockerBuilder:
    """The builder `builder` (auto | buildkit | engine) names; auto prefers BuildKit when a CLI offers it."""
    if builder == "engine":
        return DockerBuilder(credentials=credentials, progress=progress)
    cli = find_buildkit_cli(docker_cli)
    if cli is None:
        if builder == "buildkit":
            where = docker_cli or "docker on PATH or /usr/bin/docker"
            raise BuildError(
                f"image_builder=buildkit, but no Docker CLI with BuildKit was found ({where}): install "
                "docker-buildx, or use image_builder=engine"
            )
        progress.info(
            "images: no Docker CLI with BuildKit found; building with the engine API's classic builder"
        )
        return DockerBuilder(credentials=credentials, progress=progress)
    return BuildKitBuilder(cli, credentials=credentials, progress=progress)


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # `docker version` exits non-zero when the engine is down, having printed the client's version.
    return done.stdout.strip()

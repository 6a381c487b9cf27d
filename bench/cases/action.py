"""Action start-up: what a runner does before the action's first line, both ways action.yml allows.

- `image: Dockerfile` (this repository on main, `uses: ./`): the runner builds the Dockerfile on
  every run, on a fresh machine with no build cache (`docker build --no-cache`); a self-hosted
  runner with a warm engine hits the layer cache instead (shown for context).
- `image: docker://...` (a release, .github/workflows/action-image.yml): the runner pulls the
  published image (here from the stack's registry, after removing every layer of it that no other
  image holds) and runs it.

Each sample ends with one run of the action container on an event it skips (exit 0, no work), so it
is the time until the action would start working. The base image is present locally in every
variant (the stack's offline Python base, as `BASE_IMAGE`): on a hosted runner both ways also pull
it first. Builds use the engine's classic builder, as the test suite and act do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

from bench.context import REPO, Context
from bench.harness import BenchError, Sample, interleave, ratios, run_process
from bench.results import CaseResult, Check, Comparison

COLD_BUILD = "build from Dockerfile, no cache (hosted runner)"
CACHED_BUILD = "build from Dockerfile, layer cache warm (self-hosted)"
PULL = "pull the prebuilt image"
RUN_ONLY = "run only (image present)"
SOURCES = ("Dockerfile", ".dockerignore", "requirements.lock", "pyproject.toml", "README.md")
SOURCE_DIRS = ("deployer", "entrypoint", "templates")
MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
)


class _Action:
    def __init__(self, ctx: Context, docker: str, registry: str, base: str) -> None:
        self.ctx = ctx
        self.docker = docker
        self.registry = registry
        self.base = base
        self.context = _build_context(ctx.scratch("action-context"))
        run_id = uuid.uuid4().hex[:8]
        self.local = f"flyte-deploy-bench/action-{run_id}"
        self.published = f"{registry}/flyte-deploy-bench/action:{run_id}"
        # docker-py, act and the tests build with the classic builder; so do these samples.
        self.env = {**ctx.env, "DOCKER_BUILDKIT": "0"}

    def docker_cli(self, *args: str, check: bool = True) -> Sample:
        return run_process([self.docker, *args], env=self.env, check=check)

    def build(self, tag: str, *, cache: bool) -> Sample:
        args = ["build", "-q", "--build-arg", f"BASE_IMAGE={self.base}", "-t", tag]
        return self.docker_cli(*args, *([] if cache else ["--no-cache"]), str(self.context))

    def run(self, image: str) -> Sample:
        sample = self.docker_cli(
            "run", "--rm", "-e", "GITHUB_EVENT_NAME=schedule", "-e", "INPUT_PATH=workflows.py", image
        )
        if "deployed=false" not in sample.stdout:
            raise BenchError(f"the action in {image} did not report a skipped run: {sample.stdout[-300:]!r}")
        return sample

    def cold_build(self) -> Sample:
        tag = f"{self.local}:cold"
        built = self.build(tag, cache=False)
        started = self.run(tag)
        self.docker_cli("rmi", tag)
        return _sum(built, started)

    def cached_build(self) -> Sample:
        tag = f"{self.local}:cached"
        return _sum(self.build(tag, cache=True), self.run(tag))

    def pull(self) -> Sample:
        # Untimed: a fresh runner has none of its layers (the first round finds it removed already).
        self.docker_cli("rmi", self.published, check=False)
        return _sum(self.docker_cli("pull", "-q", self.published), self.run(self.published))

    def publish(self) -> int:
        """Build the image once (no cache, so no other image shares its layers), push it, and drop
        it locally; returns its compressed size in the registry."""
        self.build(self.published, cache=False)
        self.docker_cli("push", self.published)
        self.docker_cli("rmi", self.published)
        return _compressed_size(self.registry, self.published)

    def cleanup(self) -> None:
        for tag in (self.published, f"{self.local}:cached", f"{self.local}:cold"):
            self.docker_cli("rmi", tag, check=False)


def _sum(*samples: Sample) -> Sample:
    return Sample(
        seconds=sum(s.seconds for s in samples),
        peak_rss_kib=max(s.peak_rss_kib for s in samples),
        stdout=samples[-1].stdout,
        stderr=samples[-1].stderr,
    )


def _build_context(dest: Path) -> Path:
    for name in SOURCES:
        shutil.copy2(REPO / name, dest / name)
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _compressed_size(registry: str, image: str) -> int:
    name, tag = image.removeprefix(f"{registry}/").rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        manifest = json.load(response)
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


def _image_size(docker: str, image: str, env: dict[str, str]) -> int:
    done = subprocess.run(
        [docker, "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True, env=env
    )
    return int(done.stdout.strip() or 0)


def run(ctx: Context) -> CaseResult:
    result = CaseResult(name="action", title="action start-up, Dockerfile build vs prebuilt image")
    docker = shutil.which("docker", path=ctx.env.get("PATH"))
    registry = ctx.env.get("FLYTE_DEPLOY_STACK_REGISTRY")
    base = ctx.env.get("FLYTE_DEPLOY_STACK_PYTHON_IMAGE")
    if not docker or not registry or not base:
        raise BenchError("needs the test stack (scripts/stack up): a Docker engine, registry and base image")
    action = _Action(ctx, docker, registry, base)
    try:
        compressed = action.publish()
        action.build(f"{action.local}:cached", cache=False)  # the warm cache of a self-hosted runner
        runs = max(1, ctx.profile.deploy_runs)
        series = interleave(
            {
                COLD_BUILD: action.cold_build,
                CACHED_BUILD: action.cached_build,
                PULL: action.pull,
                RUN_ONLY: lambda: action.run(f"{action.local}:cached"),
            },
            runs,
            warmup=0,
        )
        unpacked = _image_size(docker, action.published, action.env)
    finally:
        action.cleanup()
    result.series = list(series.values())
    result.comparisons = [
        Comparison(PULL, COLD_BUILD, ratios(series[PULL], series[COLD_BUILD]), goal=0.5),
        Comparison(CACHED_BUILD, COLD_BUILD, ratios(series[CACHED_BUILD], series[COLD_BUILD])),
    ]
    result.checks = [
        Check("image size in the registry (compressed)", f"{compressed / 2**20:.0f} MB", "recorded", None),
        Check("image size unpacked", f"{unpacked / 2**20:.0f} MB", "recorded", None),
    ]
    result.notes.append(
        "Start-up = docker build (or pull) + one `docker run` of the action on an event it skips. "
        "The pull comes from the stack's registry on this machine (no network between them): over "
        "the internet from ghcr.io the pull grows with the compressed size above, the build with "
        "PyPI and Debian downloads of about the same volume plus the install work measured here."
    )
    return result

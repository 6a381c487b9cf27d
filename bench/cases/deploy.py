"""Whole deploys on the test stack: cold build, no-op redeploy, source-only change, release promote.

Each run is a fresh git repository holding one container-mode environment whose image has an apt
and a pip layer, made unique to the run (an env var before them), so the run's first build is
cold. Every step is one `flyte-deploy deploy` to the embedded control plane, with images pushed to
the stack's registry and Flyte's default base mirrored to the stack's local copy. What reached the
registry is read from the registry's own access log: blob uploads, cross-repository mounts and
manifest writes, for the run's repository only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.harness import BenchError, Sample, Series, Stats, progress, ratios, run_process
from bench.render import render
from bench.results import CaseResult, Check, Comparison
from bench.synth import git_commit_all, git_tag

COLD = "cold deploy"
NOOP = "no-op redeploy, container mode"
NOOP_BUNDLE = "no-op redeploy, bundle mode (S3)"
CHANGE = "source-only change deploy"
PROMOTE = "release promote deploy"
PYTHON = "interpreter start (`python -c pass`)"
NOOP_BUDGET_S = 1.5
FLYTE_BASE = "ghcr.io/flyteorg/flyte"


@dataclass(frozen=True)
class Activity:
    """What one command did to a repository of the registry, from the registry's access log."""

    uploads: int
    """Blobs (layers, image configs) whose bytes were sent."""
    mounts: int
    """Blobs linked from another repository of the registry, without sending bytes."""
    manifests: int
    """Manifests written (one per tag put)."""


class _RegistryLog:
    def __init__(self, ctx: Context) -> None:
        stack_dir = ctx.env.get("FLYTE_DEPLOY_STACK_DIR", "/var/tmp/flyte-deploy-stack")
        path = Path(stack_dir) / "logs" / "registry.log"
        self.path = path if path.is_file() else None

    def mark(self) -> int:
        return self.path.stat().st_size if self.path else 0

    def since(self, offset: int, repository: str) -> Activity | None:
        if self.path is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        repo = re.escape(repository)
        return Activity(
            uploads=len(re.findall(rf'"PUT /v2/{repo}/blobs/uploads/\S+ HTTP/[\d.]+" 201', text)),
            mounts=len(
                re.findall(rf'"POST /v2/{repo}/blobs/uploads/\?\S*(?:mount|from)=\S* HTTP/[\d.]+" 201', text)
            ),
            manifests=len(re.findall(rf'"PUT /v2/{repo}/manifests/\S+ HTTP/[\d.]+" 201', text)),
        )


@dataclass(frozen=True)
class Step:
    label: str
    sample: Sample
    report: dict[str, Any]
    activity: Activity | None

    @property
    def built(self) -> int:
        return sum(1 for image in self.report["artifacts"]["images"] if image["built"])

    @property
    def bundle_uploads(self) -> int:
        bundle = self.report["artifacts"].get("bundle")
        return 1 if bundle and not bundle.get("reused") else 0

    @property
    def statuses(self) -> set[str]:
        return {env["status"] for env in self.report["deployment"]["environments"]}

    @property
    def tags(self) -> set[str]:
        return {tag for image in self.report["artifacts"]["images"] for tag in image["tags"]}

    def stage(self, name: str) -> float:
        return sum(t["seconds"] for t in self.report.get("timings", ()) if t["stage"] == name)


class _Project:
    """One run's repository and the deploy command against the stack."""

    def __init__(self, ctx: Context, registry_log: _RegistryLog, index: int) -> None:
        self.ctx = ctx
        self.log = registry_log
        self.nonce = f"{int(time.time())}-{os.getpid()}-{index}"
        self.root = ctx.scratch(f"deploy-{index}")
        self.registry = f"{ctx.env['FLYTE_DEPLOY_STACK_REGISTRY']}/bench-{self.nonce}"
        self.repository = f"bench-{self.nonce}/svc"
        self.env = {
            **ctx.env,
            "FLYTE_DEPLOY_S3_ENDPOINT_URL": ctx.env.get("FLYTE_DEPLOY_STACK_S3_ENDPOINT", ""),
        }

    def write(self, revision: int) -> None:
        (self.root / "svc_lib").mkdir(exist_ok=True)
        (self.root / "svc_lib" / "__init__.py").write_text("")
        (self.root / "svc_lib" / "text.py").write_text(render("deploy/text.py.j2", revision=revision))
        (self.root / "workflows.py").write_text(render("deploy/workflows.py.j2", nonce=self.nonce))
        (self.root / ".gitignore").write_text("__pycache__/\n")
        git_commit_all(self.root, f"revision {revision}")

    def deploy(self, mode: str) -> Step:
        state = self.root.parent / f"{self.root.name}-state-{mode}"
        argv = [self.ctx.tool("flyte-deploy"), "deploy", "workflows.py", "svc", "--mode", mode]
        argv += ["--registry", self.registry, "--state-dir", str(state), "--json"]
        mirror = self.ctx.env["FLYTE_DEPLOY_STACK_FLYTE_IMAGE"].rsplit(":", 1)[0]
        argv += ["--base-image-mirror", f"{FLYTE_BASE}={mirror}"]
        if mode == "bundle":
            argv += ["--storage", f"s3://{self.ctx.env['FLYTE_DEPLOY_STACK_BUCKET']}/bench-{self.nonce}"]
        offset = self.log.mark()
        sample = run_process(argv, cwd=self.root, env=self.env)
        progress(f"deploy --mode {mode} (run {self.nonce}): {sample.seconds:.2f} s")
        try:
            report = json.loads(sample.stdout)
        except ValueError as exc:
            raise BenchError(f"flyte-deploy deploy --json printed no JSON: {sample.stdout[:200]!r}") from exc
        return Step(mode, sample, report, self.log.since(offset, self.repository))

    def cleanup(self) -> None:
        """Remove the run's local images and state (its registry repository stays: it is tiny)."""
        for state in self.root.parent.glob(f"{self.root.name}-state-*"):
            shutil.rmtree(state, ignore_errors=True)
        self._remove_local_images()

    def _remove_local_images(self) -> None:
        listing = subprocess.run(
            ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"{self.registry}/*"],
            capture_output=True,
            text=True,
            check=False,
            env=self.ctx.env,
        )
        references = listing.stdout.split()
        if references:
            subprocess.run(
                ["docker", "rmi", "-f", *references], capture_output=True, check=False, env=self.ctx.env
            )


def _require_stack(ctx: Context) -> None:
    needed = ("FLYTE_DEPLOY_STACK_REGISTRY", "FLYTE_DEPLOY_STACK_FLYTE_IMAGE", "FLYTE_DEPLOY_STACK_BUCKET")
    missing = [key for key in needed if not ctx.env.get(key)]
    if missing:
        raise BenchError(
            f"the test stack is not configured ({', '.join(missing)} unset): run `scripts/stack up`"
        )
    url = f"http://{ctx.env['FLYTE_DEPLOY_STACK_REGISTRY']}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=5):
            pass
    except OSError as exc:
        raise BenchError(
            f"the stack registry at {url} does not answer ({exc}): run `scripts/stack up`"
        ) from exc


def _interpreter(ctx: Context) -> Sample:
    return run_process([ctx.python, "-c", "pass"], env=ctx.env)


class _Runs:
    def __init__(self) -> None:
        self.steps: dict[str, list[Step]] = {COLD: [], NOOP: [], NOOP_BUNDLE: [], CHANGE: [], PROMOTE: []}
        self.python = Series(PYTHON)

    def add(self, label: str, step: Step) -> Step:
        step = replace(step, label=label)
        self.steps[label].append(step)
        return step

    def series(self, label: str) -> Series:
        return Series(label, [step.sample for step in self.steps[label]])


def _one_run(ctx: Context, log: _RegistryLog, index: int, runs: _Runs) -> None:
    project = _Project(ctx, log, index)
    try:
        project.write(revision=1)
        cold = runs.add(COLD, project.deploy("container"))
        if not cold.built:
            raise BenchError(f"the first deploy of run {index} built nothing: the build was not cold")
        for _ in range(2):
            runs.python.samples.append(_interpreter(ctx))
            runs.add(NOOP, project.deploy("container"))
        project.deploy("bundle")  # builds the code-less image (from cached layers) and uploads the bundle
        runs.python.samples.append(_interpreter(ctx))
        runs.add(NOOP_BUNDLE, project.deploy("bundle"))
        project.write(revision=2)
        runs.add(CHANGE, project.deploy("container"))
        git_tag(project.root, f"v1.{index}.0")
        runs.add(PROMOTE, project.deploy("container"))
    finally:
        project.cleanup()


def _activity(steps: list[Step], field: str) -> str:
    values = [getattr(s.activity, field) for s in steps if s.activity is not None]
    if len(values) < len(steps):
        return "not observable (no registry log)"
    return ", ".join(str(v) for v in values)


def _noop_checks(label: str, steps: list[Step], python: Stats) -> list[Check]:
    seconds = Stats.of([s.sample.seconds for s in steps])
    beyond = seconds.median - python.median
    builds = sum(s.built for s in steps)
    uploads = sum(s.bundle_uploads for s in steps) + sum(s.activity.uploads for s in steps if s.activity)
    statuses = set().union(*(s.statuses for s in steps))
    return [
        Check(f"{label}: images built", str(builds), "0", builds == 0),
        Check(f"{label}: blobs + bundles uploaded", str(uploads), "0", uploads == 0),
        Check(f"{label}: task status", ", ".join(sorted(statuses)), "unchanged", statuses == {"unchanged"}),
        Check(
            f"{label}: median time beyond interpreter start",
            f"{beyond:.2f} s ({seconds.median:.2f} − {python.median:.3f})",
            f"≤ {NOOP_BUDGET_S} s",
            beyond <= NOOP_BUDGET_S,
        ),
        Check(f"{label}: manifests written (tag puts)", _activity(steps, "manifests"), "recorded", None),
    ]


def _stage_series(steps: list[Step], stage: str) -> Series:
    """One stage of each deploy, as the deploy timed it (its report's `timings`)."""
    label = f"{stage} stage, {steps[0].label}" if steps else stage
    return Series(label, [Sample(seconds=s.stage(stage), peak_rss_kib=0) for s in steps])


def _change_checks(changes: list[Step], colds: list[Step]) -> list[Check]:
    rebuilt = sum(s.built for s in changes)
    return [
        Check(f"{CHANGE}: images rebuilt", f"{rebuilt} of {len(changes)}", "all", rebuilt == len(changes)),
        Check(f"{CHANGE}: blobs uploaded per run", _activity(changes, "uploads"), "recorded", None),
        Check(f"{COLD}: blobs uploaded per run", _activity(colds, "uploads"), "recorded", None),
    ]


def _promote_checks(promoted: list[Step]) -> list[Check]:
    rebuilt = sum(s.built for s in promoted)
    semver = all({f"1.{i}.0", f"1.{i}", "1", "latest"} <= s.tags for i, s in enumerate(promoted))
    observed = all(s.activity is not None for s in promoted)
    pushed = sum(s.activity.uploads for s in promoted if s.activity)
    return [
        Check(f"{PROMOTE}: images rebuilt", str(rebuilt), "0", rebuilt == 0),
        Check(
            f"{PROMOTE}: layers pushed",
            str(pushed) if observed else "not observable (no registry log)",
            "0 (retag only)",
            pushed == 0 if observed else None,
        ),
        Check(f"{PROMOTE}: manifests written (retags)", _activity(promoted, "manifests"), "recorded", None),
        Check(
            f"{PROMOTE}: tags X.Y.Z, X.Y, X, latest", "present" if semver else "missing", "present", semver
        ),
    ]


def run(ctx: Context) -> CaseResult:
    _require_stack(ctx)
    result = CaseResult(
        name="deploy", title="deploy on the test stack (embedded control plane, stack registry)"
    )
    log = _RegistryLog(ctx)
    runs = _Runs()
    for index in range(ctx.profile.deploy_runs):
        _one_run(ctx, log, index, runs)
    steps = runs.steps
    cold_images, change_images = _stage_series(steps[COLD], "images"), _stage_series(steps[CHANGE], "images")
    result.series = [runs.series(label) for label in steps] + [runs.python, cold_images, change_images]
    result.comparisons = [
        Comparison(change_images.label, cold_images.label, ratios(change_images, cold_images), goal=0.1),
        Comparison(CHANGE, COLD, ratios(runs.series(CHANGE), runs.series(COLD))),
        Comparison(PROMOTE, COLD, ratios(runs.series(PROMOTE), runs.series(COLD))),
    ]
    python = runs.python.seconds
    result.checks += _noop_checks(NOOP, steps[NOOP], python)
    result.checks += _noop_checks(NOOP_BUNDLE, steps[NOOP_BUNDLE], python)
    result.checks += _change_checks(steps[CHANGE], steps[COLD])
    result.checks += _promote_checks(steps[PROMOTE])
    result.notes.append(
        "The goal for a source-only change is judged on the deploy's own `images` stage timing (build and "
        "push), which is what the goal compares; whole-command ratios are shown beside it."
    )
    result.notes.append(
        "Each run: a fresh repository; cold deploy; two no-op redeploys of the same commit; a bundle-mode "
        "deploy then its no-op redeploy (bundle in the stack's S3); a commit changing only "
        "`svc_lib/text.py`, deployed; then a `v1.N.0` tag on that commit, deployed. The cold build runs "
        "`apt-get install jq` and `pip install six idna` (network: Debian mirror and PyPI)."
    )
    return result

"""Container deploys on a fresh CI runner: an empty engine, a registry holding the previous commit's images.

A GitHub-hosted runner starts every job with an empty Docker engine. Each run here is a fresh git
repository holding one container-mode environment whose image has a slow dependency step (apt, and
pandas + pyarrow + scikit-learn from PyPI; made unique to the run so its first build is cold). Per run:
1. cold: the first container deploy, every dependency step run;
2. then, round by round, a commit changing only the code, deployed after emptying the engine of the
   run's images and BuildKit cache (the shared stack's base images stay): once in container mode and
   once in bundle mode (bundle to the stack's S3), the order rotated each round;
3. the digest of one commit deployed from two clones: the last round's image is deleted from the
   registry (its dependency image stays) and deployed again from a second clone at another path,
   with no Docker engine reachable at all.
What reached the registry is read from its access log (blob uploads of the run's repository).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cases.deploy import FLYTE_BASE, Activity, _RegistryLog, _require_stack
from bench.context import Context
from bench.harness import BenchError, Sample, Series, progress, ratios, run_process
from bench.results import CaseResult, Check, Comparison
from bench.synth import _git

COLD = "cold container deploy (empty engine, dependencies built)"
CONTAINER = "source-only container deploy (emptied engine)"
BUNDLE = "source-only bundle deploy (same change)"
NO_ENGINE = "unix:///nonexistent/flyte-deploy-bench.sock"
CACHE_MOUNTS = tuple(
    f"cached mount {target} "
    for target in (
        "/root/.cache/uv",
        "/var/cache/apt",
        "/var/lib/apt",
        "/root/.cache/pypoetry",
        "/root/.cache/rattler",
    )
)

WORKFLOWS = '''\
"""A container-mode service for the fresh-runner benchmark (run {nonce})."""

import flyte
from svc_lib.text import shout

image = (
    flyte.Image.from_debian_base(python_version=(3, 11))
    # Unique per run and before the dependency steps: the run's first build is cold.
    .with_env_vars({{"BENCH_RUN": "{nonce}"}})
    .with_apt_packages("jq")
    # The slow dependency step: a data-science stack (~50 s to install on 2 cores).
    .with_pip_packages("pandas==2.2.3", "pyarrow==17.0.0", "scikit-learn==1.5.2")
    .with_commands(["echo bench-{nonce} && python -c 'import pandas, pyarrow, sklearn' && jq --version"])
)

svc = flyte.TaskEnvironment(name="svc", image=image)


@svc.task
async def greet(name: str) -> str:
    return f"Hello, {{shout(name)}}!"
'''


@dataclass(frozen=True)
class Deployed:
    sample: Sample
    report: dict[str, Any]
    activity: Activity | None

    @property
    def image(self) -> dict[str, Any]:
        images = self.report["artifacts"]["images"]
        return dict(images[0]) if images else {}


class _Run:
    def __init__(self, ctx: Context, log: _RegistryLog, index: int) -> None:
        self.ctx = ctx
        self.log = log
        self.nonce = f"fresh-{int(time.time())}-{index}"
        self.root = ctx.scratch(f"fresh-runner-{index}")
        self.registry = f"{ctx.env['FLYTE_DEPLOY_STACK_REGISTRY']}/bench-{self.nonce}"
        self.repository = f"bench-{self.nonce}/svc"
        self.env = {
            **ctx.env,
            "FLYTE_DEPLOY_S3_ENDPOINT_URL": ctx.env.get("FLYTE_DEPLOY_STACK_S3_ENDPOINT", ""),
        }
        self.revision = 0

    def commit(self, root: Path | None = None) -> None:
        root = root or self.root
        self.revision += 1
        (root / "svc_lib").mkdir(exist_ok=True)
        (root / "svc_lib" / "__init__.py").write_text("")
        (root / "svc_lib" / "text.py").write_text(
            f'"""Revision {self.revision}."""\n\n\ndef shout(name: str) -> str:\n    return name.upper()\n'
        )
        (root / "workflows.py").write_text(WORKFLOWS.format(nonce=self.nonce))
        (root / ".gitignore").write_text("__pycache__/\n")
        if not (root / ".git").exists():
            _git(root, "init", "-q", "-b", "main")
            # Both clones name the same origin, as two CI checkouts of one repository do.
            _git(root, "remote", "add", "origin", "https://github.com/acme/bench.git")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"revision {self.revision}")

    def deploy(self, mode: str, *, root: Path | None = None, engine: bool = True) -> Deployed:
        root = root or self.root
        state = root.parent / f"{root.name}-state-{mode}-{self.revision}"
        argv = [self.ctx.tool("flyte-deploy"), "deploy", "workflows.py", "svc", "--mode", mode]
        argv += ["--registry", self.registry, "--state-dir", str(state), "--json"]
        mirror = self.ctx.env["FLYTE_DEPLOY_STACK_FLYTE_IMAGE"].rsplit(":", 1)[0]
        argv += ["--base-image-mirror", f"{FLYTE_BASE}={mirror}"]
        if mode == "bundle":
            argv += ["--storage", f"s3://{self.ctx.env['FLYTE_DEPLOY_STACK_BUCKET']}/bench-{self.nonce}"]
        env = self.env if engine else {**self.env, "DOCKER_HOST": NO_ENGINE}
        offset = self.log.mark()
        sample = run_process(argv, cwd=root, env=env)
        progress(f"fresh runner: deploy --mode {mode} revision {self.revision}: {sample.seconds:.2f} s")
        try:
            report = json.loads(sample.stdout)
        except ValueError as exc:
            raise BenchError(f"flyte-deploy deploy --json printed no JSON: {sample.stdout[:200]!r}") from exc
        if not report["deployment"] or {e["status"] for e in report["deployment"]["environments"]} != {
            "registered"
        }:
            raise BenchError(
                f"deploy --mode {mode} of revision {self.revision} registered nothing: {sample.stderr[-300:]}"
            )
        return Deployed(sample, report, self.log.since(offset, self.repository))

    def empty_engine(self) -> None:
        """What a new runner's engine holds of this project: nothing (its images, its build cache)."""
        import docker

        client = docker.from_env()
        try:
            for image in client.api.images():
                refs = [*(image.get("RepoTags") or ()), *(image.get("RepoDigests") or ())]
                if any(ref.startswith(self.registry) for ref in refs):
                    client.api.remove_image(image["Id"], force=True)
            records = client.api.df().get("BuildCache") or []
            # The run's steps, and the package managers' cache mounts (a new runner has none of them).
            doomed = [
                r["ID"]
                for r in records
                if self.nonce in (r.get("Description") or "")
                or (
                    r.get("Type") == "exec.cachemount"
                    and (r.get("Description") or "").startswith(CACHE_MOUNTS)
                )
            ]
            parents = {r["ID"]: r.get("Parent") for r in records}
            grew = True
            while grew:
                grew = False
                for record, parent in parents.items():
                    if parent in doomed and record not in doomed:
                        doomed.append(record)
                        grew = True
            for record in reversed(doomed):
                client.api.prune_builds(filters={"id": [record]}, all=True)
        finally:
            client.close()

    def forget_image(self, image: dict[str, Any]) -> None:
        """Delete a deployed image from the registry (not its dependency image)."""
        from deployer.images.registry import RegistryClient

        # By its identity tag: a bundle deploy of the same commit moved its git tags to the dependency image.
        with RegistryClient() as client:
            client.delete_tag(image["repository"], image["identity"], delete_shared_manifest=True)
            if client.manifest_digest(image["repository"], image["identity"]) is not None:
                raise BenchError(f"{image['repository']}:{image['identity']} could not be deleted")

    def clone(self) -> Path:
        target = self.root.parent / f"{self.root.name}-second-clone" / "elsewhere" / "checkout"
        shutil.rmtree(target.parent.parent, ignore_errors=True)
        target.parent.mkdir(parents=True)
        _git(self.root.parent, "clone", "-q", "--no-local", str(self.root), str(target))
        _git(target, "remote", "set-url", "origin", "https://github.com/acme/bench.git")
        return target

    def cleanup(self) -> None:
        self.empty_engine()
        for path in self.root.parent.glob(f"{self.root.name}-*"):
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class _Results:
    cold: Series
    container: Series
    bundle: Series
    container_steps: list[Deployed]
    digests: list[tuple[str, str]]
    dependency_builds: int = 0


def _one_run(ctx: Context, log: _RegistryLog, index: int, results: _Results) -> None:
    run = _Run(ctx, log, index)
    try:
        run.commit()
        run.empty_engine()
        cold = run.deploy("container")
        if not cold.image.get("built"):
            raise BenchError(f"the first deploy of run {index} built nothing: the build was not cold")
        results.cold.samples.append(cold.sample)
        last: Deployed | None = None
        for round_ in range(ctx.profile.runs):
            run.commit()
            run.empty_engine()
            order = ("container", "bundle") if round_ % 2 == 0 else ("bundle", "container")
            for mode in order:
                deployed = run.deploy(mode)
                if mode == "container":
                    results.container.samples.append(deployed.sample)
                    results.container_steps.append(deployed)
                    last = deployed
                else:
                    results.bundle.samples.append(deployed.sample)
        assert last is not None
        run.forget_image(last.image)
        second = run.deploy("container", root=run.clone(), engine=False)
        results.digests.append((last.image["digest"], second.image["digest"]))
    finally:
        run.cleanup()


def run(ctx: Context) -> CaseResult:
    _require_stack(ctx)
    result = CaseResult(
        name="fresh_runner",
        title="fresh CI runner: empty engine, registry holding the previous commit's images",
    )
    log = _RegistryLog(ctx)
    results = _Results(Series(COLD), Series(CONTAINER), Series(BUNDLE), [], [])
    for index in range(ctx.profile.deploy_runs):
        _one_run(ctx, log, index, results)
    result.series = [results.cold, results.container, results.bundle]
    per_run = ctx.profile.runs
    cold_each = Series(COLD, [s for s in results.cold.samples for _ in range(per_run)])
    result.comparisons = [
        Comparison(CONTAINER, BUNDLE, ratios(results.container, results.bundle), goal=1.5),
        Comparison(CONTAINER, COLD, ratios(results.container, cold_each), goal=0.05),
    ]
    steps = results.container_steps
    uploads = [s.activity.uploads for s in steps if s.activity is not None]
    built = sum(1 for s in steps if s.image.get("built"))
    same = all(a == b for a, b in results.digests)
    result.checks = [
        Check(f"{CONTAINER}: new image each round", f"{built} of {len(steps)}", "all", built == len(steps)),
        Check(
            f"{CONTAINER}: blobs uploaded per deploy",
            ", ".join(map(str, uploads))
            if len(uploads) == len(steps)
            else "not observable (no registry log)",
            "≤ 2 (the code layer and its config)",
            all(u <= 2 for u in uploads) if len(uploads) == len(steps) else None,
        ),
        Check(
            "digest of one commit deployed from two clones (second: another path, no engine)",
            "; ".join(f"{a[7:19]} / {b[7:19]}" for a, b in results.digests),
            "identical",
            same,
        ),
    ]
    result.notes.append(
        "Before the cold deploy and every source-only round the engine is emptied of the run's images, of "
        "BuildKit's cache records of its steps and of the package managers' cache mounts (apt, uv); the "
        "shared stack's base images stay (a real runner pulls Flyte's base too, "
        "which neither path needs for a source-only change: the container deploy reads its manifest only). "
        "The cold deploy is compared with each round of its run. The second clone's deploy runs with "
        f"DOCKER_HOST={NO_ENGINE}."
    )
    return result

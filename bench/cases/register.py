"""Registration at scale against one `flyte-deploy serve`: the synthetic monorepo (every image mapped with
`--image`, `--copy-style none`, so nothing is built or bundled) deployed by `flyte-deploy deploy` and by
the real `flyte deploy`, then redeployed by us as a no-op.

Each round deploys a fresh version with each tool, so both register every task; our full deploy starts
with an empty state dir (no receipt), the no-op redeploy reuses it (the receipt of the deploy just made),
and a second no-op without the state dir shows what a fresh CI machine pays. The server is the same for
every command of the case; what it stored is checked after each deploy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.harness import BenchError, Sample, Series, interleave, progress, ratios, run_process
from bench.results import CaseResult, Check, Comparison
from bench.synth import MonorepoSpec, make_monorepo

OURS = "flyte-deploy deploy (full)"
FLYTE = "flyte deploy --copy-style none (full)"
NOOP = "flyte-deploy deploy (no-op redeploy)"
NOOP_FRESH = "flyte-deploy deploy (no-op redeploy, fresh state dir)"
IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
"""Never pulled: a mapped reference is only written into the task specs."""
FULL_GOAL = 0.15
NOOP_GOAL_S = 3.0


class _Server:
    """`flyte-deploy serve` on a free port, for the whole case."""

    def __init__(self, ctx: Context) -> None:
        self.state = ctx.scratch("register-serve")
        self.log = self.state.parent / "register-serve.log"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                [ctx.tool("flyte-deploy"), "serve", "--port", "0", "--state-dir", str(self.state)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**ctx.env, "PYTHONUNBUFFERED": "1"},
            )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("flyte-deploy control plane listening on "):
            self.stop()
            raise BenchError(f"flyte-deploy serve did not start: {first!r} {self.log.read_text()[-300:]}")
        self.url = first.split(" on ", 1)[1].split(" ", 1)[0]
        self.endpoint = "dns:///" + self.url.removeprefix("http://")

    def tasks_at(self, version: str) -> int:
        from deployer.controlplane.store import TaskStore

        store = TaskStore(self.state)
        try:
            return len(store.tasks_at_version(project="flytesnacks", domain="development", version=version))
        finally:
            store.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


class _Variants:
    def __init__(self, ctx: Context, repo: Path, server: _Server) -> None:
        self.ctx = ctx
        self.repo = repo
        self.server = server
        self.round = 0
        self.state = repo.parent / "register-client-state"
        self.reports: dict[str, list[dict[str, Any]]] = {OURS: [], NOOP: [], NOOP_FRESH: []}
        self.stored: dict[str, list[int]] = {OURS: [], FLYTE: []}
        self.noops = Series(NOOP)
        self.freshes = Series(NOOP_FRESH)

    def next_round(self) -> None:
        self.round += 1

    def _ours(self, version: str, state: Path) -> Sample:
        argv = [self.ctx.tool("flyte-deploy"), "deploy", "--recursive", "teams", "--copy-style", "none"]
        argv += ["--version", version, "--image", f"base={IMAGE}", "--endpoint", self.server.url]
        argv += ["--state-dir", str(state), "--json"]
        return run_process(argv, cwd=self.repo, env=self.ctx.env)

    def ours(self) -> Sample:
        """A full deploy of a new version, then its no-op redeploys (with the receipt, and without)."""
        version = f"ours-{os.getpid()}-{self.round}"
        shutil.rmtree(self.state, ignore_errors=True)
        sample = self._ours(version, self.state)
        self.reports[OURS].append(json.loads(sample.stdout))
        self.stored[OURS].append(self.server.tasks_at(version))
        for series, state in (
            (self.noops, self.state),
            (self.freshes, self.repo.parent / f"fresh-{self.round}"),
        ):
            again = self._ours(version, state)
            self.reports[series.label].append(json.loads(again.stdout))
            series.samples.append(again)
            progress(f"{series.label}: {again.seconds:.2f} s")
        return sample

    def flyte(self) -> Sample:
        version = f"flyte-{os.getpid()}-{self.round}"
        argv = [self.ctx.tool("flyte"), "--endpoint", self.server.endpoint, "--insecure", "deploy"]
        argv += ["--project", "flytesnacks", "--domain", "development", "--copy-style", "none"]
        argv += ["--version", version, "--recursive", "--image", f"base={IMAGE}", "teams"]
        home = self.repo.parent / "register-home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in self.ctx.env.items() if not k.startswith(("FLYTE", "UNION"))}
        sample = run_process(argv, cwd=self.repo, env={**env, "HOME": str(home), "COLUMNS": "200"})
        self.stored[FLYTE].append(self.server.tasks_at(version))
        return sample


def _statuses(reports: list[dict[str, Any]]) -> set[str]:
    return {env["status"] for report in reports for env in report["deployment"]["environments"]}


def _stage(reports: list[dict[str, Any]], stage: str) -> str:
    values = [sum(t["seconds"] for t in r.get("timings", ()) if t["stage"] == stage) for r in reports]
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def run(ctx: Context) -> CaseResult:
    profile = ctx.profile
    spec = MonorepoSpec(environments=profile.plan_main)
    tasks = spec.environments * spec.tasks_per_env
    result = CaseResult(
        name="register", title=f"register {spec.environments} environments / {tasks:,} tasks against serve"
    )
    repo = make_monorepo(ctx.work / "monorepos" / f"mono-{spec.environments}", spec)
    server = _Server(ctx)
    try:
        variants = _Variants(ctx, repo, server)
        plan = {OURS: variants.ours, FLYTE: variants.flyte}
        series: dict[str, Series] = interleave(
            plan, profile.register_runs, warmup=0, before_round=variants.next_round
        )
    finally:
        server.stop()
    noop = variants.noops
    result.series = [series[OURS], series[FLYTE], noop, variants.freshes]
    result.comparisons = [Comparison(OURS, FLYTE, ratios(series[OURS], series[FLYTE]), goal=FULL_GOAL)]
    result.checks += [
        Check(
            f"{NOOP}: median wall time",
            f"{noop.seconds.median:.2f} s",
            f"≤ {NOOP_GOAL_S:.0f} s",
            noop.seconds.median <= NOOP_GOAL_S,
        ),
        Check(
            "tasks stored per full deploy (ours, flyte)",
            f"{variants.stored[OURS]}, {variants.stored[FLYTE]}",
            f"{tasks} each",
            all(n == tasks for n in variants.stored[OURS] + variants.stored[FLYTE]),
        ),
        Check(
            f"{OURS}: task status",
            ", ".join(sorted(_statuses(variants.reports[OURS]))),
            "registered",
            _statuses(variants.reports[OURS]) == {"registered"},
        ),
        Check(
            f"{NOOP}: task status",
            ", ".join(sorted(_statuses(variants.reports[NOOP]))),
            "unchanged",
            _statuses(variants.reports[NOOP]) == {"unchanged"},
        ),
        Check(
            f"{NOOP}: stages run",
            ", ".join(t["stage"] for t in variants.reports[NOOP][-1]["timings"]),
            "plan only",
            [t["stage"] for t in variants.reports[NOOP][-1]["timings"]] == ["plan"],
        ),
        Check(f"{OURS}: serialize stage", _stage(variants.reports[OURS], "serialize"), "recorded", None),
        Check(f"{OURS}: register stage", _stage(variants.reports[OURS], "register"), "recorded", None),
        Check(
            f"{NOOP_FRESH}: status",
            ", ".join(sorted(_statuses(variants.reports[NOOP_FRESH]))),
            "unchanged",
            _statuses(variants.reports[NOOP_FRESH]) == {"unchanged"},
        ),
    ]
    result.notes.append(
        f"Every environment has {spec.tasks_per_env} tasks in `depends_on` chains of {spec.chain}: ours "
        "registers the chains' levels one after the other, the environments of a level at once. A no-op "
        "redeploy is recognised by its receipt in the state dir (the deploy's fingerprint: plan, code files, "
        "images, tool versions) plus one ListTasks of the version; with a fresh state dir (a new CI machine) "
        "the tasks are serialized once and compared with one bulk listing and a GetTaskDetails per held task."
    )
    return result

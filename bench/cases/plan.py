"""Plan a synthetic monorepo: `flyte-deploy plan` against `flyte deploy --dry-run`.

Both import every file under `teams/` (`--recursive`), resolve the `depends_on` chains and compute
the code bundle of the loaded modules; every image is `Image.from_ref_name("base")`, mapped with
`--image`, so neither builds anything. Flyte's dry run needs an endpoint to initialise but sends
nothing to it: a closed local port is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.harness import BenchError, Sample, Series, interleave, ratios, run_process
from bench.results import CaseResult, Check, Comparison, ScalePoint, Scaling
from bench.synth import MonorepoSpec, make_monorepo

OURS = "flyte-deploy plan"
FLYTE = "flyte deploy --dry-run"
IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
"""Never pulled: a mapped reference is only written into the task specs."""
UNUSED_ENDPOINT = "dns:///127.0.0.1:9"


class _Variants:
    def __init__(self, ctx: Context, repo: Path, spec: MonorepoSpec) -> None:
        self.ctx = ctx
        self.repo = repo
        self.spec = spec
        self.tmp = ctx.scratch(f"plan-{spec.environments}-tmp")

    def ours(self) -> Sample:
        argv = [self.ctx.tool("flyte-deploy"), "plan", "--recursive", "teams", "--json"]
        argv += ["--image", f"base={IMAGE}", "--mode", "bundle"]
        return run_process(argv, cwd=self.repo, env=self.ctx.env)

    def flyte(self) -> Sample:
        argv = [self.ctx.tool("flyte"), "--endpoint", UNUSED_ENDPOINT, "--insecure", "deploy", "--dry-run"]
        argv += ["--recursive", "--image", f"base={IMAGE}", "teams"]
        # Its dry run copies every bundle it builds to a fresh temp dir: keep them out of /tmp.
        self.tmp = self.ctx.scratch(f"plan-{self.spec.environments}-tmp")
        return run_process(
            argv, cwd=self.repo, env={**self.ctx.env, "TMPDIR": str(self.tmp), "COLUMNS": "200"}
        )


def _plan_checks(sample: Sample, spec: MonorepoSpec) -> list[Check]:
    try:
        plan: dict[str, Any] = json.loads(sample.stdout)
    except ValueError as exc:
        raise BenchError(f"flyte-deploy plan --json printed no JSON: {sample.stdout[:200]!r}") from exc
    envs = plan["environments"]
    tasks = sum(len(env["tasks"]) for env in envs)
    seen: set[str] = set()
    ordered = True
    for env in envs:
        ordered &= set(env["depends_on"]) <= seen
        seen.add(env["name"])
    builds = sum(1 for env in envs if env["image"]["needs_build"])
    want_tasks = spec.environments * spec.tasks_per_env
    return [
        Check(
            "our plan: environments, tasks",
            f"{len(envs)}, {tasks}",
            f"{spec.environments}, {want_tasks}",
            (len(envs), tasks) == (spec.environments, want_tasks),
        ),
        Check("our plan: dependencies before dependents", "yes" if ordered else "no", "yes", ordered),
        Check("our plan: images to build", str(builds), "0 (all mapped)", builds == 0),
    ]


def _flyte_checks(sample: Sample, spec: MonorepoSpec) -> list[Check]:
    loaded = re.search(r"Loaded (\d+) modules", sample.stdout + sample.stderr)
    deployed = len(re.findall(r"Deploying environment", sample.stdout + sample.stderr))
    return [
        Check(
            "flyte dry run: modules loaded",
            loaded.group(1) if loaded else "not reported",
            str(spec.environments),
            bool(loaded) and int(loaded.group(1)) == spec.environments,
        ),
        Check(
            "flyte dry run: environment deployments (its closure per root, no dedup)",
            str(deployed),
            "recorded",
            None,
        ),
    ]


def run(ctx: Context) -> CaseResult:
    profile = ctx.profile
    main_spec = MonorepoSpec(environments=profile.plan_main)
    result = CaseResult(
        name="plan",
        title=f"plan, {main_spec.environments} environments / "
        f"{main_spec.environments * main_spec.tasks_per_env} tasks",
    )
    points: dict[str, list[ScalePoint]] = {OURS: [], FLYTE: []}
    for size in sorted((profile.plan_main, *profile.plan_scaling)):
        spec = MonorepoSpec(environments=size)
        repo = make_monorepo(ctx.work / "monorepos" / f"mono-{size}", spec)
        variants = _Variants(ctx, repo, spec)
        main = size == profile.plan_main
        plan: dict[str, Callable[[], Sample]] = {OURS: variants.ours}
        if size <= profile.plan_reference_max:
            plan[FLYTE] = variants.flyte
        series: dict[str, Series] = interleave(plan, profile.plan_runs, warmup=0)
        for label, found in series.items():
            points[label].append(ScalePoint(size, found.seconds, found.peak_rss_mib))
        if main:
            result.series = list(series.values())
            result.comparisons = [Comparison(OURS, FLYTE, ratios(series[OURS], series[FLYTE]), goal=0.5)]
            result.checks += _plan_checks(series[OURS].samples[-1], spec)
            result.checks += _flyte_checks(series[FLYTE].samples[-1], spec)
            for label, found in series.items():
                result.checks.append(
                    Check(f"peak RSS, {label}", f"{found.peak_rss_mib:.0f} MiB", "recorded", None)
                )
    result.scaling = [
        Scaling(label, "environments", tuple(found)) for label, found in points.items() if len(found) > 1
    ]
    skipped = [size for size in profile.plan_scaling if size > profile.plan_reference_max]
    if skipped:
        result.notes.append(
            f"`{FLYTE}` was not run on {', '.join(f'{s:,}' for s in skipped)} environments: it grows faster "
            "than linearly (see its scaling above) and would take tens of minutes per run."
        )
    result.notes.append(
        f"Each environment has {main_spec.tasks_per_env} tasks; environments form `depends_on` chains of "
        f"{main_spec.chain} (one file each, importing the previous one). Both tools compute the "
        "`loaded_modules` bundle; flyte's dry run builds one per root environment."
    )
    return result

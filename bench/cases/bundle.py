"""Bundle a synthetic tree: `flyte-deploy bundle` against GNU tar + gzip/pigz and Flyte's bundler.

Every variant is the whole command a user would run (interpreter start and imports included) on
the same files, writing a gzip-compressed tar. Flyte's bundler runs with pigz on PATH and with
PATH stripped of pigz (it then gzips the whole tar in memory, at level 9).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.harness import BenchError, Sample, Series, interleave, ratios, run_process, shell
from bench.results import CaseResult, Check, Comparison, ScalePoint, Scaling
from bench.synth import TreeSpec, make_tree, tree_files

OURS = "flyte-deploy bundle"
LIBRARY = "deployer.bundle (library call, no CLI)"
GNU_GZIP = "GNU tar + gzip -n"
GNU_PIGZ = "GNU tar + pigz -n"
FLYTE_PIGZ = "flyte SDK bundler, pigz on PATH"
FLYTE_GZIP = "flyte SDK bundler, no pigz"
MEMORY_GOAL_MIB = 64
TAR_FLAGS = "--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"


def _label(spec: TreeSpec) -> str:
    return f"{spec.files:,} files / {spec.total_bytes / 1e6:.0f} MB"


class _Variants:
    """The commands under test, for one tree."""

    def __init__(self, ctx: Context, root: Path, tag: str) -> None:
        self.ctx = ctx
        self.root = root
        self.out = ctx.scratch(f"bundle-{tag}")
        self.no_pigz_path = ctx.path_without("pigz")

    def ours(self) -> Sample:
        argv = [self.ctx.tool("flyte-deploy"), "bundle", "--root-dir", str(self.root)]
        argv += ["--copy-style", "all", "-o", f"{self.out / 'ours'}/", "--json"]
        return run_process(argv, cwd=self.ctx.work, env=self.ctx.env)

    def library(self) -> Sample:
        argv = [self.ctx.python, self.ctx.driver("ours_bundle"), str(self.root), str(self.out / "library")]
        return run_process(argv, env=self.ctx.env)

    def gnu(self, compressor: str) -> Callable[[], Sample]:
        target = self.out / f"gnu-{compressor}.tar.gz"

        def sample() -> Sample:
            script = f"tar {TAR_FLAGS} -C '{self.root}' -c . | {compressor} -n > '{target}'"
            return shell(script, env=self.ctx.env)

        return sample

    def flyte(self, *, pigz: bool) -> Callable[[], Sample]:
        env = dict(self.ctx.env)
        if not pigz:
            env["PATH"] = self.no_pigz_path
        out = self.out / ("flyte-pigz" if pigz else "flyte-gzip")

        def sample() -> Sample:
            argv = [self.ctx.python, self.ctx.driver("flyte_bundle"), str(self.root), str(out)]
            result = run_process(argv, env=env)
            found = json.loads(result.stdout.strip().splitlines()[-1])["pigz"]
            if bool(found) != pigz:
                expected = "a pigz" if pigz else "none"
                raise BenchError(f"flyte bundler saw pigz={found!r} on PATH, expected {expected}")
            return result

        return sample


def _ours_document(sample: Sample) -> dict[str, Any]:
    try:
        return dict(json.loads(sample.stdout))
    except ValueError as exc:
        raise BenchError(f"flyte-deploy bundle --json printed no JSON: {sample.stdout[:200]!r}") from exc


def _extract_check(ctx: Context, variants: _Variants, series: Series, expected_files: int) -> list[Check]:
    documents = [_ours_document(s) for s in series.samples]
    digests = {d["digest"] for d in documents}
    bundle = Path(str(documents[-1]["path"]))
    dest = ctx.scratch("bundle-extract")
    args = [ctx.python, ctx.driver("flyte_extract"), str(bundle), str(dest), str(variants.root)]
    extracted = json.loads(run_process(args, env=ctx.env).stdout.strip().splitlines()[-1])
    intact = extracted["files"] == expected_files and not extracted["differ"] and not extracted["missing"]
    count = len(documents[-1]["files"])
    return [
        Check(
            "files in our bundle",
            f"{count}",
            f"= {expected_files} (every file of the tree)",
            count == expected_files,
        ),
        Check(
            "Flyte's runtime (`download_bundle`) extracts it",
            f"{extracted['files']} files, {extracted['differ']} differ, {extracted['missing']} missing",
            "every file, byte-identical",
            intact,
        ),
        Check(
            "same bytes every run",
            f"{len(digests)} distinct sha256 in {len(documents)} runs",
            "1",
            len(digests) == 1,
        ),
    ]


def _plan(variants: _Variants, *, main: bool, largest: bool) -> dict[str, Callable[[], Sample]]:
    """Every size: ours and the two references with goals; the main and largest sizes add the rest."""
    plan: dict[str, Callable[[], Sample]] = {
        OURS: variants.ours,
        GNU_GZIP: variants.gnu("gzip"),
        FLYTE_PIGZ: variants.flyte(pigz=True),
    }
    if main:
        plan[GNU_PIGZ] = variants.gnu("pigz")
    if main or largest:
        plan[FLYTE_GZIP] = variants.flyte(pigz=False)
        plan[LIBRARY] = variants.library
    return plan


def _comparisons(series: dict[str, Series]) -> list[Comparison]:
    ours = series[OURS]
    return [
        Comparison(OURS, GNU_GZIP, ratios(ours, series[GNU_GZIP]), goal=0.7),
        Comparison(OURS, FLYTE_PIGZ, ratios(ours, series[FLYTE_PIGZ]), goal=0.5),
        Comparison(OURS, FLYTE_GZIP, ratios(ours, series[FLYTE_GZIP])),
        Comparison(OURS, GNU_PIGZ, ratios(ours, series[GNU_PIGZ])),
        Comparison(LIBRARY, GNU_GZIP, ratios(series[LIBRARY], series[GNU_GZIP])),
        Comparison(FLYTE_PIGZ, GNU_GZIP, ratios(series[FLYTE_PIGZ], series[GNU_GZIP])),
        Comparison(FLYTE_GZIP, GNU_GZIP, ratios(series[FLYTE_GZIP], series[GNU_GZIP])),
        Comparison(GNU_PIGZ, GNU_GZIP, ratios(series[GNU_PIGZ], series[GNU_GZIP])),
    ]


def _memory_checks(series: dict[str, Series], spec: TreeSpec, *, goal: bool) -> list[Check]:
    peak = series[OURS].peak_rss_mib
    checks = [
        Check(
            f"peak RSS, {OURS}, {_label(spec)}",
            f"{peak:.0f} MiB",
            f"≤ {MEMORY_GOAL_MIB} MiB" if goal else "recorded",
            peak <= MEMORY_GOAL_MIB if goal else None,
        )
    ]
    if goal:
        checks += [
            Check(
                f"peak RSS, {label}, {_label(spec)}",
                f"{series[label].peak_rss_mib:.0f} MiB",
                "recorded",
                None,
            )
            for label in (LIBRARY, GNU_GZIP, FLYTE_PIGZ, FLYTE_GZIP)
        ]
    return checks


def run(ctx: Context) -> CaseResult:
    profile = ctx.profile
    result = CaseResult(name="bundle", title=f"bundle, {_label(profile.bundle_main)}, copy style all")
    specs = sorted((profile.bundle_main, *profile.bundle_scaling), key=lambda s: s.files)
    points: dict[str, list[ScalePoint]] = {OURS: [], GNU_GZIP: [], FLYTE_PIGZ: []}
    for spec in specs:
        root = make_tree(ctx.work / "trees" / f"tree-{spec.files}-{spec.total_bytes}", spec)
        variants = _Variants(ctx, root, f"{spec.files}")
        main, largest = spec == profile.bundle_main, spec == specs[-1]
        runs = profile.runs if main else profile.scale_runs
        series = interleave(_plan(variants, main=main, largest=largest), runs, warmup=profile.warmup)
        for label, found in points.items():
            found.append(
                ScalePoint(
                    spec.files, series[label].seconds, series[label].peak_rss_mib, spec.total_bytes / 1e6
                )
            )
        if main:
            result.series = list(series.values())
            result.comparisons = _comparisons(series)
            result.checks += _extract_check(ctx, variants, series[OURS], tree_files(root))
            result.checks += _memory_checks(series, spec, goal=False)
        if largest:
            result.checks += _memory_checks(series, spec, goal=True)
        shutil.rmtree(variants.out, ignore_errors=True)
    result.scaling = [Scaling(label, "files", tuple(found)) for label, found in points.items()]
    result.notes.append(
        "Wall time of the whole command (interpreter start and imports included for the Python tools); "
        "peak RSS is the largest single process (for `tar | gzip`, the larger of the two). "
        f"`{LIBRARY}` is `select_files` + `build_bundle` in a bare interpreter: the bundler without the CLI."
    )
    return result

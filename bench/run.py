"""Run the benchmarks: `.venv/bin/python bench/run.py [--quick] [--only CASE ...]`.

Prints a markdown report (machine, goals, per-case tables) and writes it to bench/RESULTS.md
(quick runs write to the work dir instead, so they never replace a measured report).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `bench` and `deployer` importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.context import DEFAULT_WORK, FULL, QUICK, REPO, Context
from bench.harness import BenchError
from bench.machine import Machine, load_average
from bench.render import render
from bench.results import CaseResult

ANALYSIS = REPO / "bench" / "analysis.md"


def _cases() -> dict[str, Callable[[Context], CaseResult]]:
    from bench.cases import action, bundle, deploy, fresh_runner, plan, register

    return {
        "bundle": bundle.run,
        "plan": plan.run,
        "deploy": deploy.run,
        "register": register.run,
        "action": action.run,
        "fresh_runner": fresh_runner.run,
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1-2 runs: checks the harness")
    parser.add_argument("--only", nargs="+", metavar="CASE", help=f"cases to run: {', '.join(_cases())}")
    parser.add_argument(
        "--runs", type=int, help="measured rounds of the main comparisons (default 5; quick 2)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"work dir (default {DEFAULT_WORK})")
    parser.add_argument(
        "--output", type=Path, help="report file (default bench/RESULTS.md; quick: WORK/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(_cases()))
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: no such case (cases: {', '.join(_cases())})")
    if args.runs is not None and args.runs < 1:
        parser.error(f"--runs {args.runs}: must be at least 1")
    return args


def _run_case(name: str, fn: Callable[[Context], CaseResult], ctx: Context) -> CaseResult:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    start = load_average()
    try:
        result = fn(ctx)
    except (BenchError, FileNotFoundError) as exc:
        result = CaseResult(name=name, title=name, error=str(exc))
    result.load = (start, load_average())
    print(
        f"[bench] {name}: {'failed: ' + result.error if result.error else 'done'}",
        file=sys.stderr,
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    profile = QUICK if args.quick else FULL
    if args.runs is not None:
        profile = replace(profile, runs=args.runs, scale_runs=min(profile.scale_runs, args.runs))
    ctx = Context.create(profile, args.work.resolve())
    machine = Machine.describe()
    chosen = {name: fn for name, fn in _cases().items() if not args.only or name in args.only}
    results = [_run_case(name, fn, ctx) for name, fn in chosen.items()]
    command = "python bench/run.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    loads = [value for r in results if r.load for value in r.load]
    peak_load = max([machine.load, *loads])
    load_note = (
        f"The machine was shared while measuring: the 1-minute load average reached {peak_load:.1f} on "
        f"{machine.cores} cores. Ratios (same round, side by side) are more trustworthy than absolute times."
        if peak_load > machine.cores * 0.75
        else ""
    )
    report = render(
        "results.md.j2",
        profile=profile,
        machine=machine,
        command=command,
        cases=results,
        load_note=load_note,
        analysis=ANALYSIS.read_text().strip() if ANALYSIS.is_file() and profile.name != QUICK.name else "",
    )
    print(report)
    output = args.output or (ctx.work / "RESULTS.md" if args.quick else REPO / "bench" / "RESULTS.md")
    output.write_text(report)
    print(f"[bench] wrote {output}", file=sys.stderr)
    missed = [line for r in results for line in r.missed]
    for line in missed:
        print(f"[bench] goal missed: {line}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Timing and memory of whole commands, run side by side.

Every measurement is one child process: wall time from spawn to exit, and its peak resident set
size: the largest single process of the tree it started (for a shell pipeline, the pipeline's
largest member, not their sum), as `wait4` reports it. The kernel counts a child's pre-exec image
(a copy of its parent) in that peak, so children are started through GNU time (a ~3 MiB parent)
rather than directly from this interpreter, whose own size would otherwise be the floor.

Variants of a case are interleaved round by round, with the order rotated each round, so machine
load drifts onto all of them alike; ratios are taken within a round (pair by pair) and then
summarised.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(Exception):
    """A benchmark could not be run; the message is one line naming the command or input."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_kib: int
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)


GNU_TIME = "/usr/bin/time"


def _peak_rss_kib(report: Path, fallback: int) -> int:
    """GNU time's `%M` (KiB) from its report file; `wait4`'s figure when time is not installed."""
    try:
        return int(report.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return fallback


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Sample:
    """Run `argv` to completion; its wall time and peak RSS. Fails (BenchError) on a non-zero exit."""
    with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
        report = Path(tmp) / "rss"
        launcher = [GNU_TIME, "-q", "-f", "%M", "-o", str(report)] if os.access(GNU_TIME, os.X_OK) else []
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            start = time.perf_counter()
            try:
                process = subprocess.Popen(
                    [*launcher, *argv],
                    cwd=cwd,
                    env=dict(env) if env is not None else None,
                    stdout=out,
                    stderr=err,
                )
            except OSError as exc:
                raise BenchError(f"cannot start {argv[0]}: {exc.strerror}") from exc
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        peak = _peak_rss_kib(report, usage.ru_maxrss)
    if check and process.returncode != 0:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:]) or "no output"
        raise BenchError(f"`{' '.join(argv)}` exited {process.returncode}: {tail}")
    return Sample(seconds=seconds, peak_rss_kib=peak, stdout=stdout, stderr=stderr)


def shell(script: str, *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Sample:
    """A pipeline run by `bash -o pipefail` (a failing stage fails the sample)."""
    return run_process(["bash", "-o", "pipefail", "-c", script], cwd=cwd, env=env)


@dataclass(frozen=True)
class Stats:
    low: float
    median: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise BenchError("no samples to summarise")
        return cls(min(values), statistics.median(values), max(values), len(values))


@dataclass
class Series:
    """Samples of one variant of a case, in round order."""

    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> Stats:
        return Stats.of([s.seconds for s in self.samples])

    @property
    def peak_rss_mib(self) -> float:
        return max(s.peak_rss_kib for s in self.samples) / 1024


Variant = Callable[[], Sample]


def progress(message: str) -> None:
    print(f"[bench]   {message}", file=sys.stderr, flush=True)


def interleave(
    variants: Mapping[str, Variant],
    runs: int,
    *,
    warmup: int = 1,
    before_round: Callable[[], None] | None = None,
) -> dict[str, Series]:
    """Run every variant `runs` times, round-robin with rotated order, after `warmup` unmeasured rounds."""
    labels = list(variants)
    series = {label: Series(label) for label in labels}
    for round_index in range(warmup + runs):
        if before_round is not None:
            before_round()
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            sample = variants[label]()
            measured = round_index >= warmup
            if measured:
                series[label].samples.append(sample)
            kind = f"run {round_index - warmup + 1}/{runs}" if measured else "warm-up"
            progress(f"{label}: {sample.seconds:.2f} s, {sample.peak_rss_kib / 1024:.0f} MiB ({kind})")
    return series


def ratios(ours: Series, reference: Series) -> Stats:
    """ours / reference within each round, summarised over rounds."""
    pairs = zip(ours.samples, reference.samples, strict=True)
    return Stats.of([a.seconds / b.seconds for a, b in pairs])

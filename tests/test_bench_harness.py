"""The benchmark harness runs end to end (benchmarks are not tests: no speed is asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_plan_benchmark_prints_and_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--only",
            "plan",
            "--work",
            str(tmp_path / "work"),
            "--output",
            str(report),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = report.read_text()
    assert result.stdout.strip() == written.strip()
    assert "## Machine" in written and "| cores (usable) |" in written
    # Both tools measured side by side, with a pairwise ratio judged against the goal.
    assert "| flyte-deploy plan | 1 |" in written
    assert "| flyte deploy --dry-run | 1 |" in written
    assert "| flyte-deploy plan / flyte deploy --dry-run |" in written and "≤ 0.5×" in written
    # The planner's own output was checked, not just timed.
    assert "| our plan: environments, tasks | 10, 50 | 10, 50 | met |" in written
    assert "Scaling of flyte-deploy plan" in written


def test_unknown_case_is_one_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "nope", "--work", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--only nope: no such case" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "RESULTS.md").exists()

"""The registration benchmark runs end to end in quick mode (no speed is asserted: benchmarks are not
tests); what it checks about the deploys it times is in its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_register_benchmark_deploys_with_both_tools_against_one_serve(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "register", "--work", str(tmp_path / "work"),
         "--output", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    written = report.read_text()
    assert "| flyte-deploy deploy (full) / flyte deploy --copy-style none (full) |" in written
    assert "≤ 0.15×" in written
    # Both tools registered every task on the same server; our redeploys were no-ops.
    assert "| tasks stored per full deploy (ours, flyte) | [50], [50] | 50 each | met |" in written
    assert "| flyte-deploy deploy (no-op redeploy): task status | unchanged | unchanged | met |" in written
    assert "| flyte-deploy deploy (no-op redeploy): stages run | plan | plan only | met |" in written
    assert (
        "| flyte-deploy deploy (no-op redeploy, fresh state dir): status | unchanged | unchanged | met |"
        in written
    )

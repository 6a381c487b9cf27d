"""The workflows in .github/workflows/ are clean under zizmor (default persona) and actionlint (with
shellcheck), follow the hardening rules those linters check loosely, and the linters really catch
what they are run for."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'", pytrace=False)
    return str(path)


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail(
            "shellcheck is not installed: apt-get install shellcheck (scripts/test does)", pytrace=False
        )
    return found


def zizmor(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("zizmor"), "--offline", "--quiet", "--no-progress", "--color=never", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def actionlint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-shellcheck", shellcheck()],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def workflows() -> dict[str, dict[Any, Any]]:
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


# ---------------------------------------------------------------------------------------------- the linters


def test_zizmor_reports_nothing_on_the_workflows() -> None:
    result = zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_actionlint_reports_nothing_on_the_workflows() -> None:
    result = actionlint(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_linters_catch_template_injection_unpinned_actions_and_shell_bugs(tmp_path: Path) -> None:
    """The clean runs above mean something only if the same commands fail on a bad workflow."""
    bad = tmp_path / ".github" / "workflows"
    bad.mkdir(parents=True)
    (bad / "bad.yml").write_text(
        "on: pull_request\n"
        "permissions: write-all\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED\n',
        encoding="utf-8",
    )
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    found = zizmor(bad)
    assert found.returncode != 0
    for audit in ("template-injection", "unpinned-uses", "artipacked"):
        assert f"[{audit}]" in found.stdout, (audit, found.stdout)
    linted = actionlint(tmp_path)
    assert linted.returncode != 0
    assert "SC2086" in linted.stdout  # shellcheck ran on the `run:` script
    assert 'runtime "node20" is deprecated' in linted.stdout


# ---------------------------------------------------------------------------------------------- the rules


def test_every_action_is_pinned_by_full_sha_with_its_version() -> None:
    for name, workflow in workflows().items():
        text = (WORKFLOWS / name).read_text(encoding="utf-8")
        for step in steps(workflow):
            uses = step.get("uses")
            if uses is None or uses.startswith("./"):
                continue
            assert PINNED.match(uses), (name, uses)
            [line] = [line for line in text.splitlines() if f"uses: {uses}" in line]
            assert VERSION_COMMENT.search(line), (name, line)


def test_no_expression_is_expanded_inside_a_run_script() -> None:
    for name, workflow in workflows().items():
        for step in steps(workflow):
            assert "${{" not in step.get("run", ""), (name, step.get("name") or step["run"])


def test_permissions_are_empty_by_default_and_granted_per_job() -> None:
    for name, workflow in workflows().items():
        assert workflow["permissions"] == {}, name
        for job_name, job in workflow["jobs"].items():
            granted = job.get("permissions")
            assert isinstance(granted, dict) and granted, (name, job_name)
            assert "write-all" not in str(granted) and "read-all" not in str(granted), (name, job_name)


def test_checkouts_do_not_persist_the_token() -> None:
    for name, workflow in workflows().items():
        for step in steps(workflow):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, name


def test_only_the_image_release_may_write_contents() -> None:
    for name, workflow in workflows().items():
        for job in workflow["jobs"].values():
            if job["permissions"].get("contents") == "write":
                assert name == "action-image.yml", name

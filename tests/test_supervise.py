"""User code that ends or hangs the process while it is imported: one error line naming the file, a
nonzero exit, nothing deployed — in the CLI and in the Action. Import-time prints never reach --json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hardening import cli, one_error_line, registered_tasks, run_action

APP = """import flyte

base = flyte.TaskEnvironment(name="base")


@base.task
def double(x: int) -> int:
    return 2 * x

"""


def project(make_git_repo: Callable[..., Any], tail: str) -> Any:
    return make_git_repo(files={"app.py": APP + tail, "helper.py": "VALUE = 1\n"})


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (
            "import os\nos._exit(0)\n",
            "error: importing app.py ended the process with exit code 0 (os._exit?)",
        ),
        (
            "import os\nos._exit(3)\n",
            "error: importing app.py ended the process with exit code 3 (os._exit?)",
        ),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "error: the run was killed by SIGKILL while importing app.py",
        ),
    ],
)
def test_an_import_that_ends_the_process_is_one_error_and_deploys_nothing(
    make_git_repo: Callable[..., Any], tail: str, message: str
) -> None:
    repo = project(make_git_repo, tail)
    result = cli("deploy", "app.py", "base", "--mode", "bundle", cwd=repo.path)
    assert result.code == 1
    line = one_error_line(result.stderr)
    assert line.startswith(message) and line.endswith("nothing was deployed"), line
    assert registered_tasks(repo.path / ".flyte-deploy") == {}


def test_an_import_that_never_finishes_is_stopped_at_the_timeout(make_git_repo: Callable[..., Any]) -> None:
    repo = project(make_git_repo, "import helper\nwhile helper.VALUE:\n    pass\n")
    result = cli(
        "deploy",
        "app.py",
        "base",
        "--mode",
        "bundle",
        cwd=repo.path,
        env={"FLYTE_DEPLOY_IMPORT_TIMEOUT": "3"},
    )
    assert result.code == 1
    line = one_error_line(result.stderr)
    assert line.startswith("error: importing app.py did not finish within 3 s"), line
    assert "FLYTE_DEPLOY_IMPORT_TIMEOUT" in line
    assert registered_tasks(repo.path / ".flyte-deploy") == {}


def test_a_bad_import_timeout_is_one_error_naming_the_variable(make_git_repo: Callable[..., Any]) -> None:
    repo = project(make_git_repo, "")
    result = cli("plan", "app.py", "base", cwd=repo.path, env={"FLYTE_DEPLOY_IMPORT_TIMEOUT": "soon"})
    assert result.code == 2
    assert one_error_line(result.stderr).startswith("error: FLYTE_DEPLOY_IMPORT_TIMEOUT='soon'")


def test_prints_at_import_time_go_to_stderr_and_json_stays_json(make_git_repo: Callable[..., Any]) -> None:
    tail = "import os, sys\nprint('hello from import')\nos.write(1, b'raw write\\n')\nsys.stdout.flush()\n"
    repo = project(make_git_repo, tail)
    result = cli("plan", "app.py", "base", "--mode", "bundle", "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["environments"][0]["name"] == "base"
    assert "hello from import" in result.stderr and "raw write" in result.stderr


def test_the_action_reports_an_import_that_ends_the_process(
    make_git_repo: Callable[..., Any], tmp_path: Path
) -> None:
    repo = project(make_git_repo, "import os\nos._exit(0)\n")
    payload = {"ref": "refs/heads/main", "after": repo.head_sha, "repository": {"default_branch": "main"}}
    run = run_action(
        repo.path,
        "push",
        payload,
        runner_dir=tmp_path / "runner",
        # An endpoint is needed to deploy; the import ends the run before it is ever called.
        inputs={"path": "app.py", "all": "true", "mode": "bundle", "endpoint": "dns:///flyte.invalid:443"},
        env={"GITHUB_REF": "refs/heads/main", "GITHUB_SHA": repo.head_sha, "GITHUB_REPOSITORY": "acme/app"},
    )
    assert run.code == 1, run.log
    errors = [line for line in run.log.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and "importing app.py ended the process with exit code 0" in errors[0], run.log
    assert "Traceback" not in run.log
    assert run.outputs["deployed"] == "false"
    assert "importing app.py ended the process" in run.summary


# --------------------------------------------------------------------------------- the SDK after a fork


@pytest.mark.timeout(60)
def test_a_supervised_child_can_call_the_sdk_the_parent_had_imported() -> None:
    """Every entry point forks in `supervised`, after the settings imported flyte (its config file): the
    child must get the SDK's sync-over-async loop back, or every `.aio` call there waits forever."""
    import faulthandler
    import threading

    import flyte.syncify

    from deployer.supervise import Finished, supervised

    @flyte.syncify.syncify
    async def answer() -> int:
        return 42

    assert "flyte_syncify" in {t.name for t in threading.enumerate()}  # the parent's loop runs

    def work() -> int:
        # Without the loop's thread the call below never returns: end the child with its stack, not later.
        faulthandler.dump_traceback_later(30, exit=True)
        code = 0 if answer() == 42 else 5
        faulthandler.cancel_dump_traceback_later()
        return code

    assert supervised(work, import_timeout_s=30, timeout_setting="X") == Finished(0)
    assert answer() == 42  # and the parent's loop is untouched


@pytest.mark.timeout(90)
def test_the_action_translates_apps_in_its_supervised_child(project_repo: Any, tmp_path: Path) -> None:
    """The Action's entrypoint forks through the same supervisor as the CLI: a dry run of a program with
    apps (translated through the SDK's `.aio`) finishes, and lists the apps and triggers it would send."""
    repo = project_repo("scheduled")
    payload = {"ref": "refs/heads/main", "after": repo.head_sha, "repository": {"default_branch": "main"}}
    run = run_action(
        repo.path,
        "push",
        payload,
        runner_dir=tmp_path / "runner",
        inputs={"path": "workflows.py", "all": "true", "mode": "bundle", "dry_run": "true"},
        env={"GITHUB_REF": "refs/heads/main", "GITHUB_SHA": repo.head_sha, "GITHUB_REPOSITORY": "acme/app"},
        timeout=60,
    )
    assert run.code == 0, run.log
    assert "| report-api | `report-api` |" in run.summary and "| report-docs | `report-docs` |" in run.summary
    assert "| `reports.build_report` | `nightly` |" in run.summary

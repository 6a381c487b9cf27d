"""`flyte-deploy run` of deployed tasks in bundle mode: no Docker engine, a local virtualenv running
Flyte's runtime (`a0`) on the downloaded bundle. Deployed from the packaging docs' layouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.runner.action import ActionDir, fill_args
from tests.fixtures.gitrepo import init_git_repo
from tests.fixtures.pipeline import REPO_ROOT, CliResult, run_cli
from tests.projects import copy_project

# No engine answers here: `--mode auto` falls back to bundle mode and `run` must not need Docker.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def deploy(flyte_deploy, cwd: Path, *args: str) -> CliResult:
    result = flyte_deploy("deploy", *args, "--json", cwd=cwd, env=NO_DOCKER)
    assert result.code == 0, result.stderr
    assert {e["status"] for e in result.json["deployment"]["environments"]} <= {"registered", "unchanged"}
    return result


def run(flyte_deploy, cwd: Path, *args: str) -> CliResult:
    return flyte_deploy("run", *args, cwd=cwd, env=NO_DOCKER)


@pytest.mark.parametrize(
    ("project", "deploy_args", "run_args", "expected"),
    [
        ("flat", ["workflows.py", "env"], ["flat.clean", "--input", "text=  Hello   WORLD "], "hello world"),
        ("flat", ["workflows.py", "env"], ["flat.average", "--input", "values=[1, 2, 6]"], "3.0"),
        (
            "src_layout",
            ["src/weather/workflows.py", "env", "--root-dir", "src"],
            ["weather.fahrenheit", "--root-dir", "src", "--input", "celsius=100"],
            "212.0",
        ),
        (
            "monorepo",
            ["services/ml_service/workflows.py", "env"],
            ["ml-service.featurize", "--input", "values=[1.5, 2]"],
            "[3.0, 4.0]",
        ),
        ("chain", ["pipeline/viz.py", "viz"], ["prep.load", "-i", "n=3"], "[0, 1, 2]"),
        (
            "by_domain",
            ["workflows.py", "env", "--domain", "production"],
            ["etl-prod.extract", "--domain", "production", "--input", "rows=7"],
            "7",
        ),
        (
            "ref_image",
            ["workflows.py", "env", "--image", "trainer=registry.example.com/ml/trainer:py3.11-v2.12.1"],
            ["trainer.fit", "--input", "epochs=4"],
            "8",
        ),
    ],
    ids=["flat-clean", "flat-average", "src_layout", "monorepo", "chain-leaf", "by_domain", "ref_image"],
)
def test_run_deployed_task_from_bundle(
    project: str, deploy_args: list[str], run_args: list[str], expected: str, project_repo, flyte_deploy
) -> None:
    repo = project_repo(project)
    deployed = deploy(flyte_deploy, repo.path, *deploy_args)
    assert {env["mode"] for env in deployed.json["plan"]["environments"]} == {"bundle"}

    result = run(flyte_deploy, repo.path, *run_args)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == expected
    assert "(bundle mode, in a local virtualenv)" in result.stderr


def test_run_json_names_what_ran(project_repo, flyte_deploy) -> None:
    repo = project_repo("flat")
    deployed = deploy(flyte_deploy, repo.path, "workflows.py", "env")
    result = run(flyte_deploy, repo.path, "flat.average", "--input", "values=[2.5]", "--json")
    assert result.code == 0, result.stderr

    ran = result.json
    assert ran["outputs"] == {"o0": 2.5}
    assert ran["mode"] == "bundle"
    assert ran["version"] == deployed.json["plan"]["version"]
    assert ran["bundle_uri"] == deployed.json["artifacts"]["bundle"]["uri"]
    run_dir = Path(ran["run_dir"])
    # The runtime extracted the deployed bundle (and only it) into the action's working dir.
    assert (run_dir / "code" / "tasks" / "stats.py").is_file()
    assert (run_dir / "outputs" / "outputs.pb").is_file()


def test_only_bundled_files_are_importable(project_repo, flyte_deploy) -> None:
    """`report` imports a module lazily: `loaded_modules` leaves it out of the bundle, `all` keeps it."""
    repo = project_repo("flat")
    deploy(flyte_deploy, repo.path, "workflows.py", "env", "--version", "lazy-missing")
    missing = run(flyte_deploy, repo.path, "flat.report", "--version", "lazy-missing", "-i", "values=[1]")
    assert missing.code != 0
    assert missing.error_line.startswith("error: task flat.report failed: ")
    assert "utils.lazy_report" in missing.error_line

    deploy(flyte_deploy, repo.path, "workflows.py", "env", "--version", "lazy-bundled", "--copy-style", "all")
    bundled = run(flyte_deploy, repo.path, "flat.report", "--version", "lazy-bundled", "-i", "values=[1, 2]")
    assert bundled.code == 0, bundled.stderr
    assert bundled.stdout.strip() == "1.00, 2.00"


def test_default_version_is_the_newest_deployed(project_repo, flyte_deploy) -> None:
    repo = project_repo("flat")
    deploy(flyte_deploy, repo.path, "workflows.py", "env", "--version", "v1")
    repo.write("utils/text.py", "def normalize(text: str) -> str:\n    return text.strip().upper()\n")
    deploy(flyte_deploy, repo.path, "workflows.py", "env", "--version", "v2")

    newest = run(flyte_deploy, repo.path, "flat.clean", "--input", "text= a b ")
    assert newest.stdout.strip() == "A B", newest.stderr
    older = run(flyte_deploy, repo.path, "flat.clean", "--version", "v1", "--input", "text= A B ")
    assert older.stdout.strip() == "a b", older.stderr


def test_task_calling_other_tasks_needs_a_flyte_backend(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    deploy(flyte_deploy, repo.path, "pipeline/viz.py", "viz")
    result = run(flyte_deploy, repo.path, "viz.chart", "--input", "n=3")
    assert result.code != 0
    assert result.error_line == (
        "error: task viz.chart calls other tasks, which needs a full Flyte backend: "
        "`flyte-deploy run` executes leaf tasks only"
    )


@pytest.fixture(scope="module")
def deployed_flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`flat`, committed and deployed once for the tests that only run it."""
    repo = init_git_repo(tmp_path_factory.mktemp("git") / "flat")
    copy_project("flat", repo.path)
    repo.commit("add flat")
    deploy(run_cli, repo.path, "workflows.py", "env")
    return repo.path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["flat.average", "--input", "values=[1,"],
            "error: --input values=[1,: expected a JSON list of numbers (e.g. [1.5]), got '[1,' (not valid",
        ),
        (
            ["flat.average", "-i", 'values="x"'],
            "error: --input values=\"x\": expected a JSON list of numbers (e.g. [1.5]), got 'x'",
        ),
        (["flat.average", "-i", "values=[true]"], "error: --input values=[true]: [0]: expected a number"),
        (["flat.average"], "error: task flat.average needs --input for: values"),
        (["flat.average", "-i", "value=[1]"], "error: --input value: task flat.average has no such input"),
        (["flat.average", "--input", "values"], "error: --input 'values': expected NAME=VALUE"),
        (["average"], "error: task 'average': expected ENV.TASK"),
        (["flat.nope"], "error: task flat.nope is not deployed in flytesnacks/development"),
        (["flat.average", "--version", "v9"], "error: task flat.average version v9 is not deployed"),
    ],
    ids=[
        "bad-json",
        "wrong-type",
        "wrong-item",
        "missing",
        "unknown",
        "no-equals",
        "no-env",
        "no-task",
        "no-version",
    ],
)
def test_bad_run_input_is_one_clear_line(args: list[str], message: str, deployed_flat: Path) -> None:
    runs_before = set((deployed_flat / ".flyte-deploy" / "runs").glob("*"))
    result = run(run_cli, deployed_flat, *args)
    assert result.code != 0
    assert result.error_line.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert set((deployed_flat / ".flyte-deploy" / "runs").glob("*")) == runs_before  # nothing was started


def test_run_without_any_deploy_says_so(tmp_path: Path, flyte_deploy) -> None:
    result = run(flyte_deploy, tmp_path, "flat.average")
    assert result.code != 0
    assert result.error_line.startswith(f"error: nothing is deployed in {tmp_path / '.flyte-deploy'}")
    assert not (tmp_path / ".flyte-deploy").exists()


def test_template_variables_are_filled_as_flyte_does(tmp_path: Path) -> None:
    action = ActionDir.create(tmp_path)
    args = [
        "a0", "--inputs", "{{.input}}", "--outputs-path", "{{.outputPrefix}}", "--raw-data-path",
        "{{.rawOutputDataPrefix}}", "--checkpoint-path", "{{.checkpointOutputPrefix}}", "--prev-checkpoint",
        "{{.prevCheckpointPrefix}}", "--run-name", "{{.runName}}", "--name", "{{.actionName}}",
        "--run-start-time", "{{.runStartTime}}",
    ]  # fmt: skip
    filled = dict(zip(args[1::2], fill_args(args, action)[2::2], strict=True))
    assert filled["--inputs"] == str(action.inputs)
    assert filled["--outputs-path"] == str(action.outputs)
    assert filled["--raw-data-path"] == str(action.raw_data)
    assert filled["--prev-checkpoint"] == ""
    assert filled["--run-name"] == action.run_name and filled["--name"] == "a0"
    assert not any("{{" in value for value in filled.values())


def test_demo_script_without_docker(tmp_path: Path) -> None:
    """README command 1 on a machine with no Docker engine: bundle mode, run in a local virtualenv."""
    env = {**os.environ, **NO_DOCKER, "FLYTE_DEPLOY_DEMO_VENV": sys.prefix}
    env["FLYTE_DEPLOY_DEMO_DIR"] = str(tmp_path)
    env.pop("FLYTE_DEPLOY_STACK_REGISTRY", None)
    demo = str(REPO_ROOT / "scripts" / "demo")
    done = subprocess.run([demo], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("Hello, FLYTE!")
    assert "no Docker engine answers: bundle mode" in done.stderr
    assert "(bundle mode, in a local virtualenv)" in done.stderr
    assert done.stderr.count(": unchanged (") == 2  # the second deploy of the same commit
    assert (tmp_path / "hello" / ".flyte-deploy" / "controlplane.sqlite3").is_file()


def test_local_runtime_matches_the_tasks_image(tmp_path: Path) -> None:
    import flyte

    from deployer.runner.local_venv import runtime_bin_dir, wanted_runtime

    assert wanted_runtime("ghcr.io/flyteorg/flyte:py3.12-v2.13.0") == ("3.12", "2.13.0")
    assert wanted_runtime("127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1@sha256:" + "a" * 64) == (
        "3.11",
        "2.12.1",
    )
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert wanted_runtime("registry.example.com/team/custom:latest") == (here, flyte.__version__)
    # Same Python and flyte release as this virtualenv: it is reused, nothing is created.
    bin_dir = runtime_bin_dir(here, flyte.__version__, tmp_path / "runtimes", log=tmp_path / "log")
    assert bin_dir == Path(sys.executable).parent
    assert not (tmp_path / "runtimes").exists()

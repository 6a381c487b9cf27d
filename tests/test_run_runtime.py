"""`flyte-deploy run` of the task shapes the runtime has to start: a pod-template task (its primary
container), tasks needing secrets (an env var and a file), a task whose code raises, and an image without
the task's code. `tests/projects/shapes` is deployed once per mode for the session (tests/fixtures/shapes.py):
bundle mode without a Docker engine (a local virtualenv runs `a0`), container mode on the stack (the code
appended to the cached Flyte base)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.pipeline import CliResult, run_cli
from tests.fixtures.shapes import deploy_shapes
from tests.test_run import NO_DOCKER

TOKEN = "tok-secret-7f3a91"
PASSWORD = "pw-secret-c04e22"


@dataclass(frozen=True)
class Deployed:
    repo: Path
    mode: str
    domain: str
    env: dict[str, str]

    def run(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        return run_cli("run", *args, "--domain", self.domain, cwd=self.repo, env={**self.env, **(env or {})})


@pytest.fixture(scope="session")
def bundled(shapes_bundle: Path) -> Deployed:
    return Deployed(shapes_bundle, "bundle", "development", NO_DOCKER)


@pytest.fixture(scope="session")
def baked(shapes_container: Path) -> Deployed:
    return Deployed(shapes_container, "container", "development", {})


@pytest.fixture(params=["bundle", pytest.param("container", marks=pytest.mark.stack)])
def deployed(request: pytest.FixtureRequest) -> Deployed:
    return request.getfixturevalue("baked" if request.param == "container" else "bundled")


def _only_error(result: CliResult) -> str:
    assert result.code != 0, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.error_line


def _newest_run(repo: Path) -> Path:
    return max((repo / ".flyte-deploy" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)


def _files_holding(root: Path, *values: str) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and any(value.encode() in path.read_bytes() for value in values)
    ]


def test_a_bundle_mode_task_never_sees_the_callers_credentials(bundled: Deployed) -> None:
    caller = {"AWS_SECRET_ACCESS_KEY": "aws-c41", "GITHUB_TOKEN": "ghs-9d2", "FLYTE_CLIENT_SECRET": "f-77"}
    result = bundled.run("checks.environment", "--json", env=caller)
    assert result.code == 0, result.stderr
    seen = set(result.json["outputs"]["o0"])
    assert not seen & set(caller)
    assert {"PATH", "HOME", "RUN_NAME"} <= seen


def test_pod_template_task_runs_its_primary_container(deployed: Deployed) -> None:
    result = deployed.run("pod.greeting", "--input", "name=ada")
    assert result.code == 0, result.stderr
    # GREETING is set only in the pod spec's primary container.
    assert result.stdout.strip() == "hello from the pod spec, ada"
    assert f"({deployed.mode} mode, " in result.stderr and ", pod template container main)" in result.stderr
    assert (
        "warning: task pod.greeting: runs its pod template's primary container main only; "
        "not started locally: sidecar"
    ) in result.stderr

    as_json = deployed.run("pod.greeting", "--input", "name=bo", "--json")
    assert as_json.code == 0, as_json.stderr
    assert as_json.json["outputs"] == {"o0": "hello from the pod spec, bo"}
    assert as_json.json["pod_container"] == "main" and as_json.json["mode"] == deployed.mode


def test_secrets_are_mounted_where_flyte_puts_them(deployed: Deployed) -> None:
    """`api-token` as the variable API_TOKEN, `db-password` as a file in the secrets directory."""
    result = deployed.run(
        "vault.credentials", "--secret", f"api-token={TOKEN}", "--secret", "db-password=env:DB_PW", "--json",
        env={"DB_PW": PASSWORD},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json["outputs"] == {"o0": "token 17 chars ..91, password 16 chars ..22"}
    assert TOKEN not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    run_dir = Path(result.json["run_dir"])
    assert not (run_dir / "secrets").exists()  # bundle mode's file secrets are removed after the run
    assert _files_holding(run_dir, TOKEN, PASSWORD) == []

    # `--secret NAME` alone reads the variable NAME, else the one the SDK names for it (API_TOKEN,
    # DB_PASSWORD).
    from_env = deployed.run(
        "vault.credentials", "-s", "api-token", "-s", "db-password",
        env={"API_TOKEN": "tok-from-env-42", "DB_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert from_env.code == 0, from_env.stderr
    assert from_env.stdout.strip() == "token 15 chars ..42, password 16 chars ..22"


def test_a_secret_not_given_is_one_line(deployed: Deployed) -> None:
    runs = deployed.repo / ".flyte-deploy" / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    # The caller's own API_TOKEN is not the task's secret: only --secret gives one.
    missing = deployed.run("vault.credentials", "-s", f"api-token={TOKEN}", env={"API_TOKEN": TOKEN})
    assert _only_error(missing) == (
        "error: task vault.credentials needs secret db-password: pass --secret db-password=VALUE, "
        "or --secret db-password=env:VAR to read it from an environment variable"
    )
    both = deployed.run("vault.credentials", env={"API_TOKEN": TOKEN})
    assert _only_error(both).startswith(
        "error: task vault.credentials needs secrets api-token, db-password: "
        "pass --secret api-token=VALUE --secret db-password=VALUE"
    )
    unset = deployed.run("vault.credentials", "-s", "api-token=env:NO_SUCH_VAR", "-s", "db-password=x")
    assert _only_error(unset) == (
        "error: --secret api-token=env:NO_SUCH_VAR: the environment variable NO_SUCH_VAR is not set"
    )
    unknown = deployed.run("checks.positive", "-i", "value=1", "--secret", "api-token=x")
    assert _only_error(unknown) == (
        "error: --secret api-token: task checks.positive asks for no such secret (its secrets: none)"
    )
    assert (set(runs.glob("*")) if runs.exists() else set()) == before  # nothing was started


def test_a_secret_in_the_tasks_own_error_is_masked(deployed: Deployed) -> None:
    revoked = f"revoked-{TOKEN}"
    result = deployed.run("vault.credentials", "-s", f"api-token={revoked}", "-s", f"db-password={PASSWORD}")
    line = _only_error(result)
    assert line.startswith("error: task vault.credentials failed: PermissionError: token *** was refused")
    assert revoked not in result.stderr and TOKEN not in result.stderr
    log = _newest_run(deployed.repo) / "task.log"
    assert "checking token ***" in log.read_text()  # the task printed it; the log we keep masks it
    assert _files_holding(log.parent, TOKEN, PASSWORD) == []


def test_a_failing_task_reports_its_own_exception(deployed: Deployed) -> None:
    result = deployed.run("checks.positive", "--input", "value=-3")
    assert _only_error(result).startswith(
        "error: task checks.positive failed: ValueError: bad value -3: must not be negative (log: "
    )

    verbose = deployed.run("checks.positive", "--input", "value=-3", "--verbose")
    assert verbose.code != 0
    lines = verbose.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert 'raise ValueError(f"bad value {value}: must not be negative")' in verbose.stderr
    assert lines[-2] == "ValueError: bad value -3: must not be negative"
    assert lines[-1].startswith("error: task checks.positive failed: ValueError: bad value -3")

    fine = deployed.run("checks.positive", "--input", "value=3")
    assert fine.code == 0 and fine.stdout.strip() == "3", fine.stderr


@pytest.mark.stack
def test_image_without_the_code_names_the_missing_module(
    shapes_container: Path, shapes_registry: list[str], registry_url: str
) -> None:
    """`--copy-style none` runs Flyte's base as-is: it has no `workflows` module."""
    args = ("--domain", "nocode", "--mode", "container", "--copy-style", "none", "--version", "no-code")
    deploy_shapes(shapes_container, *args, *shapes_registry)
    result = run_cli("run", "checks.positive", "-i", "value=1", "--domain", "nocode", cwd=shapes_container)
    line = _only_error(result)
    assert line.startswith(
        "error: task checks.positive failed: ModuleNotFoundError: No module named 'workflows': "
        f"the task's image {registry_url}/flyteorg/flyte:py3.11-v2.12.1@sha256:"
    ), line
    assert " does not hold its module workflows (log: " in line and ".profile" not in line

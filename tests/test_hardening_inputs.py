"""Bad input: one clear line naming the culprit, a non-zero exit, and nothing built, pushed, uploaded
or registered — checked in the Docker engine, the registry, the S3 bucket and the control plane.

Every deploy here would build and push (a Docker engine answers, so `--mode auto` means container
mode) and upload its bundle to S3 if the bad input were not caught first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hardening import (
    cli,
    one_error_line,
    pull_request_event,
    registered_tasks,
    registry_repositories,
    run_action,
    s3_keys,
)

pytestmark = pytest.mark.stack

BOOM = """import flyte

raise RuntimeError("cannot reach the feature store")

env = flyte.TaskEnvironment(name="boom")
"""
BROKEN = """import flyte

def f(:
    pass
"""
CYCLE = """import flyte

a = flyte.TaskEnvironment(name="a")
b = flyte.TaskEnvironment(name="b", depends_on=[a])
a.depends_on.append(b)


@a.task
async def ta() -> int:
    return 1


@b.task
async def tb() -> int:
    return 2
"""
SAME_NAME = """import flyte

env = flyte.TaskEnvironment(name="same")


@env.task
async def {task}() -> int:
    return 1
"""
REF_IMAGE = """import flyte

env = flyte.TaskEnvironment(name="trainer", image=flyte.Image.from_ref_name("trainer"))


@env.task
async def train() -> int:
    return 1
"""
LONG_VERSION = "v" + "1" * 79  # ours allows 128 characters; the control plane's rule is 63


def add_image_variable(repo: Any) -> None:
    repo.commit("name the image", files={"app.py": repo.read("app.py") + "\nshared_image = image\n"})


def link_outside(repo: Any) -> None:
    outside = repo.path.parent / "outside"
    outside.mkdir()
    (outside / "credentials").write_text("aws_secret_access_key = not-for-bundles\n")
    (repo.path / "shared").symlink_to(outside)


def bad_event(repo: Any) -> dict[str, str]:
    event = repo.path.parent / "event.json"
    event.write_text('{"pull_request": {"number": 7, "head": ')
    return {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}


Setup = Callable[[Any], dict[str, str] | None]

CASES: list[tuple[str, tuple[str, ...], Setup | None, tuple[str, ...]]] = [
    ("missing-path", ("nope.py", "env"), None, ("nope.py: no such file or directory",)),
    ("var-not-found", ("app.py", "nope"), None, ("app.py: no variable 'nope'", "variables in it: app, base")),
    (
        "var-not-an-environment",
        ("app.py", "shared_image"),
        add_image_variable,
        ("app.py: 'shared_image' is of type Image, not a flyte.TaskEnvironment",),
    ),
    (
        "import-raises",
        ("boom.py", "env"),
        None,
        ("boom.py:3: RuntimeError: cannot reach the feature store",),
    ),
    ("syntax-error", ("broken.py", "env"), None, ("broken.py:3: SyntaxError",)),
    ("depends-on-cycle", ("cycle.py", "a"), None, ("depends_on cycle: a -> b -> a",)),
    (
        "two-environments-one-name",
        ("--recursive", "same"),
        None,
        ("two different environments are named 'same': same/one.py and same/two.py",),
    ),
    (
        "unmapped-ref-name",
        ("ref_image.py", "env"),
        None,
        ("Image.from_ref_name('trainer')", "--image trainer=URI"),
    ),
    (
        "image-empty-name",
        ("ref_image.py", "env", "--image", "=ghcr.io/acme/trainer:1"),
        None,
        ("--image '=ghcr.io/acme/trainer:1': expected NAME=URI (both non-empty)",),
    ),
    (
        "image-empty-uri",
        ("ref_image.py", "env", "--image", "trainer="),
        None,
        ("--image 'trainer=': expected NAME=URI (both non-empty)",),
    ),
    (
        "image-bad-reference",
        ("ref_image.py", "env", "--image", "trainer=ghcr.io/acme/trainer:not a tag"),
        None,
        ("--image 'trainer=ghcr.io/acme/trainer:not a tag'", "not an image reference"),
    ),
    (
        "image-no-equals-upper-case",
        ("ref_image.py", "env", "--image", "ghcr.io/Acme/Trainer:1"),
        None,
        ("'ghcr.io/Acme/Trainer:1'", "repository names must be lower case"),
    ),
    (
        "bad-copy-style",
        ("app.py", "app", "--copy-style", "everything"),
        None,
        ("'--copy-style'", "'everything' is not one of"),
    ),
    ("bad-mode", ("app.py", "app", "--mode", "kubernetes"), None, ("'--mode'", "'kubernetes' is not one of")),
    (
        "copy-style-none-without-version",
        ("app.py", "app", "--copy-style", "none"),
        None,
        ("--copy-style none ships no code", "pass --version"),
    ),
    ("bad-version", ("app.py", "app", "--version", "1.0 beta"), None, ("--version '1.0 beta'",)),
    (
        "version-the-control-plane-rejects",
        ("app.py", "app", "--version", LONG_VERSION),
        None,
        (f"version {LONG_VERSION}: INVALID_ARGUMENT", "must be at most 63 characters"),
    ),
    ("unknown-sha", ("app.py", "app", "--sha", "0" * 40), None, (f"--sha {'0' * 40}: no such commit",)),
    (
        "symlink-escaping-root-dir",
        ("app.py", "app", "--copy-style", "all"),
        link_outside,
        ("symlink shared points outside root_dir",),
    ),
    (
        "malformed-event-payload",
        ("app.py", "app"),
        bad_event,
        ("GITHUB_EVENT_PATH", "event.json: not valid JSON"),
    ),
]


@pytest.fixture
def bad_project(tiny_repo: Callable[..., Any]) -> Any:
    return tiny_repo(
        **{
            "boom.py": BOOM,
            "broken.py": BROKEN,
            "cycle.py": CYCLE,
            "same/one.py": SAME_NAME.format(task="one"),
            "same/two.py": SAME_NAME.format(task="two"),
            "ref_image.py": REF_IMAGE,
        }
    )


@pytest.fixture
def deploy_nothing(
    registry_url: str, unique_repo: str, s3_client: Any, s3_bucket: str, docker_client: Any, stack_env: Any
) -> Callable[..., Any]:
    """`deploy_nothing(repo, *args, env=None)`: run `flyte-deploy deploy ARGS` with a registry and S3
    storage of this test's own, assert that it failed without a trace anywhere; return its error line."""
    storage = f"hardening/{unique_repo}"

    def deploy(repo: Any, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> str:
        storage_env = {"FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]}
        flags = ("--registry", f"{registry_url}/{unique_repo}", "--storage", f"s3://{s3_bucket}/{storage}")
        result = cli("deploy", *args, *flags, cwd=repo.path, env=storage_env | (env or {}), prefix=prefix)
        assert result.code != 0, result.stderr
        error = one_error_line(result.stderr)
        assert result.stdout == ""
        assert registered_tasks(repo.path / ".flyte-deploy") == {}
        assert s3_keys(s3_client, s3_bucket, storage) == []
        assert registry_repositories(registry_url, unique_repo) == {}
        assert docker_client.images.list(filters={"reference": f"{registry_url}/{unique_repo}/*"}) == []
        return error

    return deploy


@pytest.mark.parametrize(("args", "setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_it_and_deploys_nothing(
    bad_project: Any,
    deploy_nothing: Callable[..., str],
    args: tuple[str, ...],
    setup: Setup | None,
    expected: tuple[str, ...],
) -> None:
    env = setup(bad_project) if setup else None
    error = deploy_nothing(bad_project, *args, env=env or None)
    for fragment in expected:
        assert fragment in error, error


def test_sha_outside_a_git_repository(
    tiny_repo: Any, deploy_nothing: Callable[..., str], tmp_path: Path
) -> None:
    plain = tmp_path / "not-a-repo"
    shutil.copytree(tiny_repo().path, plain, ignore=shutil.ignore_patterns(".git"))
    error = deploy_nothing(_Dir(plain), "app.py", "app", "--sha", "abc1234")
    assert error == f"error: --sha abc1234: {plain} is not in a git repository"


def test_unreadable_file_is_named(tiny_repo: Any, deploy_nothing: Callable[..., str]) -> None:
    repo = tiny_repo(**{"notes/plan.txt": "the plan\n"})
    (repo.path / "notes" / "plan.txt").chmod(0)
    # Root reads any file; root without the capabilities that bypass permissions does not, like any
    # CI user.
    no_bypass = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    error = deploy_nothing(repo, "app.py", "app", "--copy-style", "all", prefix=no_bypass)
    assert error == "error: cannot read notes/plan.txt: Permission denied"


class _Dir:
    """A project directory that is not a git repository (what `deploy_nothing` needs of a repo)."""

    def __init__(self, path: Path) -> None:
        self.path = path


def test_registry_with_upper_case_is_lower_cased_not_refused(
    tiny_repo: Any, registry_url: str, unique_repo: str
) -> None:
    repo = tiny_repo()
    shouting = f"{registry_url}/Hardening-Upper/{unique_repo.replace('flyte-deploy-test/', 'Case-')}"
    result = cli(
        "deploy", "app.py", "app", "--mode", "container", "--registry", shouting, "--json", cwd=repo.path
    )
    assert result.code == 0, result.stderr
    [image] = {i["repository"] for i in result.json["artifacts"]["images"]}  # type: ignore[index]
    assert image == image.lower() and image.startswith(shouting.lower() + "/")
    assert registry_repositories(registry_url, shouting.lower().removeprefix(f"{registry_url}/"))


def test_a_tag_that_only_looks_like_semver_is_no_release(tiny_repo: Any) -> None:
    repo = tiny_repo()
    repo.tag("v1.2")
    result = cli("deploy", "app.py", "app", "--mode", "bundle", "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    assert result.json["plan"]["version"] == repo.head_sha  # type: ignore[index]
    assert result.json["plan"]["release"] is False  # type: ignore[index]
    assert "warning: tag 'v1.2' is not a semver version (vX.Y.Z): not a release" in result.stderr


def test_action_input_with_an_unknown_value_is_one_annotation_and_deploys_nothing(
    tiny_repo: Any, tmp_path: Path
) -> None:
    repo = tiny_repo()
    event = pull_request_event(7, repo.head_sha, repo="acme/app")
    run = run_action(
        repo.path,
        "pull_request",
        event,
        runner_dir=tmp_path / "runner",
        inputs={"path": "app.py", "all": "true", "mode": "kubernetes", "modde": "bundle"},
        env={"GITHUB_REPOSITORY": "acme/app"},
    )
    assert run.code == 2, run.log
    errors = [line for line in run.log.splitlines() if line.startswith("::error")]
    assert errors == [
        "::error title=flyte-deploy%3A bad input::input `mode`: 'kubernetes' is not valid "
        "(use one of: auto, container, bundle)"
    ]
    assert "Traceback" not in run.log
    assert run.outputs == {"deployed": "false"}
    assert registered_tasks(repo.path / ".flyte-deploy") == {}


def test_a_pull_request_head_missing_from_a_shallow_checkout_still_deploys(tiny_repo: Any) -> None:
    """GitHub checks out a PR's merge commit, often one commit deep: the head commit named by the
    event is not in the repository, and the version must follow it all the same."""
    repo = tiny_repo()
    head = "1234567890abcdef" * 2 + "12345678"
    event = repo.path.parent / "event.json"
    event.write_text(json.dumps(pull_request_event(5, head, repo="acme/app")))
    env = {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REF": "refs/pull/5/merge",
    }
    result = cli("deploy", "app.py", "app", "--mode", "bundle", "--json", cwd=repo.path, env=env)
    assert result.code == 0, result.stderr
    assert result.json["plan"]["version"] == head  # type: ignore[index]
    assert registered_tasks(repo.path / ".flyte-deploy") == {"app.greet": [head], "base.double": [head]}

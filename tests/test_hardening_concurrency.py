"""Deploys that run at the same time: two of one commit agree on one copy; two PR previews stay apart.

Each deploy is a separate process (the CLI, or the action's entrypoint), as two CI jobs would be, and
they share the real registry, S3 server and a served control plane.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fixtures.hardening import (
    cli,
    pull_request_event,
    registered_tasks,
    run_action,
    s3_keys,
    statuses,
)
from tests.fixtures.stack import registry_manifest_digest

pytestmark = pytest.mark.stack

T = TypeVar("T")
REPO = "acme/app"
TOKEN = "ghs_hardening_concurrency"


def at_once(*calls: Callable[[], T]) -> list[T]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def test_two_deploys_of_one_commit_at_once_agree_on_one_copy(
    tiny_repo: Any, start_serve: Any, registry_url: str, unique_repo: str
) -> None:
    # A first build: without coordination each process would build an image (and digest) of its own.
    repo = tiny_repo(unique=True)
    served = start_serve()
    deploy = (
        "deploy", "app.py", "app", "--mode", "container", "--json",
        "--registry", f"{registry_url}/{unique_repo}", "--endpoint", served.url,
    )  # fmt: skip
    runs = at_once(*[lambda: cli(*deploy, cwd=repo.path)] * 2)

    for run in runs:
        assert run.code == 0, run.stderr
    reports = [run.json for run in runs]
    [version] = {report["plan"]["version"] for report in reports}  # type: ignore[index]
    # Each task was registered by exactly one of the two; the other found it already deployed.
    for env in ("base", "app"):
        assert sorted(statuses(report)[env] for report in reports) == ["registered", "unchanged"], env
    # One image: both deploys name the same digest, and that is what the registry's tags point at.
    images = {(i["repository"], i["digest"]) for r in reports for i in r["artifacts"]["images"]}  # type: ignore[index]
    [(repository, digest)] = images
    path = repository.removeprefix(f"{registry_url}/")
    for tag in (f"sha-{repo.head_sha[:7]}", reports[0]["artifacts"]["images"][0]["identity"]):  # type: ignore[index]
        assert registry_manifest_digest(registry_url, path, tag) == digest, tag
    uri = f"{repository}@{digest}"
    assert {e["image"] for r in reports for e in r["deployment"]["environments"]} == {uri}  # type: ignore[index]
    assert registered_tasks(served.state_dir) == {"app.greet": [version], "base.double": [version]}


def test_two_previews_of_different_pull_requests_at_once_stay_independent(
    tiny_repo: Any,
    start_serve: Any,
    github_api: Any,
    stack_env: dict[str, str],
    s3_client: Any,
    s3_bucket: str,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    first = tiny_repo()
    second = first.clone(tmp_path / "second")
    second.commit("greet louder", files={"app.py": first.read("app.py").replace("hello", "HELLO")})
    served = start_serve()
    github_api.add_token(TOKEN)
    prefix = f"hardening/{unique_repo}"
    inputs = {
        "path": "app.py",
        "all": "true",
        "mode": "bundle",
        "endpoint": served.url,
        "storage": f"s3://{s3_bucket}/{prefix}",
        "github_token": TOKEN,
    }

    def preview(number: int, workspace: Any) -> Any:
        sha = workspace.head_sha
        github_api.add_pull(REPO, number, head_sha=sha)
        env = {
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_API_URL": github_api.url,
            "GITHUB_REF": f"refs/pull/{number}/merge",
            "GITHUB_SHA": sha,
            "FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"],
        }
        event = pull_request_event(number, sha, repo=REPO)
        runner = tmp_path / f"runner-{number}"
        return lambda: run_action(
            workspace.path, "pull_request", event, runner_dir=runner, inputs=inputs, env=env
        )

    runs = at_once(preview(51, first), preview(52, second))

    for run in runs:
        assert run.code == 0, run.log
    versions = {51: f"pr-51-{first.head_sha}", 52: f"pr-52-{second.head_sha}"}
    assert [run.outputs["version"] for run in runs] == [versions[51], versions[52]]
    for run in runs:
        assert {e["status"] for e in json.loads(run.outputs["environments"])} == {"registered"}
    # Both versions live side by side in one control plane, and in one bucket (the code differs).
    assert registered_tasks(served.state_dir) == {
        "app.greet": sorted(versions.values()),
        "base.double": sorted(versions.values()),
    }
    bundles = [run.outputs["bundle-uri"] for run in runs]
    assert len(set(bundles)) == 2
    assert s3_keys(s3_client, s3_bucket, prefix) == sorted(
        b.removeprefix(f"s3://{s3_bucket}/") for b in bundles
    )
    # Each pull request got its own comment and deployment, naming only its own version.
    comments = {c.issue_number: c.body for c in github_api.repos[REPO].comments}
    assert sorted(comments) == [51, 52]
    for number, other in ((51, 52), (52, 51)):
        assert f"`{versions[number]}`" in comments[number] and versions[other] not in comments[number]
    deployments = {d.environment: d for d in github_api.repos[REPO].deployments}
    assert sorted(deployments) == ["preview/pr-51", "preview/pr-52"]
    assert {d.statuses[-1].state for d in deployments.values()} == {"success"}

"""Faults in the middle of a deploy: bounded retries, then one clear error; nothing half-done; and the
same command run again finishes the job.

The services are the stack's real registry and S3 server and our real control plane; a fault-injecting
TCP proxy (tests/fixtures/hardening.py) sits in front of one of them and refuses connections or answers
5xx at a chosen request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hardening import (
    cli,
    one_error_line,
    pull_request_event,
    registered_tasks,
    registry_repositories,
    registry_tags,
    run_action,
    s3_keys,
    statuses,
)

pytestmark = pytest.mark.stack

MANIFEST_PUT = r"/manifests/build-"


def test_registry_failing_mid_push_is_retried_then_reported_and_a_rerun_completes(
    tiny_repo: Any, fault_proxy: Any, registry_url: str, unique_repo: str
) -> None:
    repo = tiny_repo()
    proxy = fault_proxy(registry_url)
    deploy = (
        "deploy",
        "app.py",
        "app",
        "--mode",
        "container",
        "--registry",
        f"{proxy.address}/{unique_repo}",
    )
    state = repo.path / ".flyte-deploy"

    # The layers land, then every manifest PUT answers 503: a bounded number of attempts, one error.
    proxy.fail("PUT", MANIFEST_PUT, 503)
    failed = cli(*deploy, cwd=repo.path)
    assert failed.code != 0
    error = one_error_line(failed.stderr)
    assert error.startswith(f"error: push of {proxy.address}/{unique_repo}/")
    assert "503 Service Unavailable (tried 3 times)" in error
    assert proxy.seen("PUT", MANIFEST_PUT) == 3
    assert registry_repositories(registry_url, unique_repo) == {}
    assert registered_tasks(state) == {}

    # The registry dies the moment the manifest arrives: the retries find it down.
    proxy.heal()
    proxy.go_down_at("PUT", MANIFEST_PUT)
    down = cli(*deploy, cwd=repo.path)
    assert down.code != 0
    error = one_error_line(down.stderr)
    assert error.startswith(f"error: push of {proxy.address}/{unique_repo}/") and "(tried 3 times)" in error
    assert registry_repositories(registry_url, unique_repo) == {}
    assert registered_tasks(state) == {}

    # Back up, with one last hiccup that the retry absorbs: the same command completes the deploy.
    proxy.heal()
    proxy.start()
    proxy.fail("PUT", MANIFEST_PUT, 503, times=1)
    before = proxy.seen("PUT", MANIFEST_PUT)
    rerun = cli(*deploy, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert proxy.seen("PUT", MANIFEST_PUT) - before == 2
    report = rerun.json
    assert statuses(report) == {"base": "registered", "app": "registered"}
    [image] = {(i["repository"], i["digest"]) for i in report["artifacts"]["images"]}  # type: ignore[index]
    path = image[0].removeprefix(f"{proxy.address}/")
    tags = registry_tags(registry_url, path)
    assert f"sha-{repo.head_sha[:7]}" in tags and any(t.startswith("build-") for t in tags)
    version = report["plan"]["version"]  # type: ignore[index]
    assert registered_tasks(state) == {"app.greet": [version], "base.double": [version]}


def test_s3_answering_5xx_or_stopped_fails_cleanly_and_a_rerun_completes(
    tiny_repo: Any,
    fault_proxy: Any,
    stack_env: dict[str, str],
    s3_client: Any,
    s3_bucket: str,
    unique_repo: str,
) -> None:
    repo = tiny_repo()
    proxy = fault_proxy(stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])
    prefix = f"hardening/{unique_repo}"
    env = {"FLYTE_DEPLOY_S3_ENDPOINT_URL": proxy.url, "FLYTE_DEPLOY_S3_MAX_ATTEMPTS": "3"}
    deploy = ("deploy", "app.py", "app", "--mode", "bundle", "--storage", f"s3://{s3_bucket}/{prefix}")
    state = repo.path / ".flyte-deploy"
    upload = rf"/{s3_bucket}/{prefix}/[0-9a-f]{{64}}\.tar\.gz$"

    proxy.fail("PUT", upload, 503)
    failed = cli(*deploy, cwd=repo.path, env=env)
    assert failed.code != 0
    error = one_error_line(failed.stderr)
    assert error.startswith("error: cannot upload ") and f"s3://{s3_bucket}/{prefix}/" in error
    assert proxy.seen("PUT", upload) == 3
    assert s3_keys(s3_client, s3_bucket, prefix) == []
    assert registered_tasks(state) == {}

    proxy.heal()
    proxy.stop()
    stopped = cli(*deploy, cwd=repo.path, env=env)
    assert stopped.code != 0
    error = one_error_line(stopped.stderr)
    assert f"s3://{s3_bucket}/{prefix}/" in error and proxy.address in error
    assert s3_keys(s3_client, s3_bucket, prefix) == []
    assert registered_tasks(state) == {}

    proxy.start()
    proxy.fail("PUT", upload, 500, times=1)
    rerun = cli(*deploy, "--json", cwd=repo.path, env=env)
    assert rerun.code == 0, rerun.stderr
    report = rerun.json
    bundle = report["artifacts"]["bundle"]  # type: ignore[index]
    assert s3_keys(s3_client, s3_bucket, prefix) == [f"{prefix}/{bundle['digest']}.tar.gz"]
    assert statuses(report) == {"base": "registered", "app": "registered"}
    assert {e["bundle_uri"] for e in report["deployment"]["environments"]} == {bundle["uri"]}  # type: ignore[index]


def test_no_docker_engine_falls_back_to_bundles_only_in_auto_mode(tiny_repo: Any, tmp_path: Path) -> None:
    repo = tiny_repo()
    state = repo.path / ".flyte-deploy"
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}

    # An image with a layer of its own needs the engine (code on a plain base is appended in the
    # registry and needs none).
    layered = tiny_repo("layered")
    layered.commit(
        "a layer",
        files={
            "app.py": layered.read("app.py").replace(
                '")\n', '").clone(name="layered", extendable=True).with_env_vars({"A": "1"})\n', 1
            )
        },
    )
    layered_state = layered.path / ".flyte-deploy"
    forced = cli(
        "deploy",
        "app.py",
        "app",
        "--mode",
        "container",
        "--registry",
        "127.0.0.1:5000/x",
        cwd=layered.path,
        env=no_engine,
    )
    assert forced.code != 0
    assert one_error_line(forced.stderr).startswith("error: cannot reach the Docker engine")
    assert registered_tasks(layered_state) == {}
    assert not (layered_state / "bundles").exists()

    auto = cli("deploy", "app.py", "app", "--mode", "auto", "--json", cwd=repo.path, env=no_engine)
    assert auto.code == 0, auto.stderr
    report = auto.json
    plan = report["plan"]  # type: ignore[index]
    assert {(e["name"], e["mode"]) for e in plan["environments"]} == {("base", "bundle"), ("app", "bundle")}
    assert all("no Docker engine answered" in e["mode_reason"] for e in plan["environments"])
    assert statuses(report) == {"base": "registered", "app": "registered"}
    assert report["artifacts"]["images"] == []  # type: ignore[index]
    assert len(list((state / "bundles").rglob("*.tar.gz"))) == 1


def test_control_plane_stopped_between_two_environments_then_rerun_completes(
    tiny_repo: Any, fault_proxy: Any, start_serve: Any
) -> None:
    repo = tiny_repo()
    served = start_serve()
    proxy = fault_proxy(served.url)
    deploy = ("deploy", "app.py", "app", "--mode", "bundle", "--endpoint", proxy.url)

    # `base` is registered; the control plane is gone before `app` is.
    proxy.go_down_after("POST", r"/DeployTask$")
    failed = cli(*deploy, "--json", cwd=repo.path)
    assert failed.code != 0
    error = one_error_line(failed.stderr)
    assert error.startswith(f"error: registering app failed: control plane {proxy.url} is unreachable")
    assert error.endswith("registered: base; not registered: app. Run the same deploy again to complete it")
    assert statuses(failed.json) == {"base": "registered", "app": "failed"}
    version = failed.json["plan"]["version"]  # type: ignore[index]
    assert registered_tasks(served.state_dir) == {"base.double": [version]}

    proxy.start()
    rerun = cli(*deploy, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert statuses(rerun.json) == {"base": "unchanged", "app": "registered"}
    assert registered_tasks(served.state_dir) == {"app.greet": [version], "base.double": [version]}


REPO = "acme/app"
TOKEN = "ghs_hardening_writer"


def test_github_api_failing_never_fails_a_good_deploy_and_a_rerun_comments(
    tiny_repo: Any, github_api: Any, tmp_path: Path, start_serve: Any
) -> None:
    served = start_serve(tmp_path / "plane")
    repo = tiny_repo()
    sha = repo.head_sha
    github_api.add_token(TOKEN)
    github_api.add_pull(REPO, 41, head_sha=sha)
    github_api.fail("GET", r"/issues/41/comments$", 502, times=100)
    github_api.fail("POST", r"/deployments$", 403, times=100)
    event = pull_request_event(41, sha, repo=REPO)
    env = {
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github_api.url,
        "GITHUB_REF": "refs/pull/41/merge",
        "GITHUB_SHA": sha,
    }
    inputs = {"path": "app.py", "all": "true", "mode": "bundle", "github_token": TOKEN}
    inputs["endpoint"] = served.url

    first = run_action(
        repo.path, "pull_request", event, runner_dir=tmp_path / "first", inputs=inputs, env=env
    )
    assert first.code == 0, first.log
    version = f"pr-41-{sha}"
    assert first.outputs["deployed"] == "true" and first.outputs["version"] == version
    # The deploy is reported where the user looks first, whatever GitHub's API did.
    assert "preview of #41 deployed" in first.summary and f"`{version}`" in first.summary
    assert "| **base** |" in first.summary and "| **app** |" in first.summary
    assert "::warning::GitHub: could not update the comment on pull request #41: HTTP 502" in first.log
    assert "HTTP 403" in first.log and "the token lacks permission" in first.log
    # Bounded: the 5xx is retried a few times; the 403 is not, as waiting cannot fix a permission.
    lookups = sum(1 for c in github_api.calls if c.method == "GET" and c.path.endswith("/issues/41/comments"))
    assert 2 <= lookups <= 5, lookups
    assert sum(1 for c in github_api.calls if c.method == "POST" and c.path.endswith("/deployments")) == 1
    assert github_api.repos[REPO].comments == []
    state = served.state_dir
    assert registered_tasks(state) == {"app.greet": [version], "base.double": [version]}

    # GitHub is back: the same run again posts the comment; the deploy itself is already done.
    github_api.reset()
    github_api.add_token(TOKEN)
    github_api.add_pull(REPO, 41, head_sha=sha)
    again = run_action(
        repo.path, "pull_request", event, runner_dir=tmp_path / "again", inputs=inputs, env=env
    )
    assert again.code == 0, again.log
    assert "::warning::" not in again.log
    [comment] = github_api.repos[REPO].comments
    assert f"`{version}`" in comment.body and "preview of #41 deployed" in comment.body
    assert {e["status"] for e in json.loads(again.outputs["environments"])} == {"unchanged"}
    assert registered_tasks(state) == {"app.greet": [version], "base.double": [version]}

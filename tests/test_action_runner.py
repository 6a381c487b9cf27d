"""The action as a GitHub runner runs it: whole workflows under nektos/act, and the action image with
actions/runner's own `docker run` flags, against the stack and the GitHub API fake.

Each flow is one test. Tests of behaviour issue 14 asks to change assert the behaviour it asks for.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from deployer.report.render import comment_marker
from tests.fixtures.act import BROKEN, PROJECT, ActApp
from tests.fixtures.gitrepo import GitRepo
from tests.fixtures.runner_flags import REPO, RunnerResult, ServiceNetwork
from tests.fixtures.stack import registry_manifest_digest
from tests.githubapi import GitHubAPIServer

pytestmark = pytest.mark.stack

PROJECT_NAME = "flytesnacks"


def tags_of(registry: str, repository: str) -> set[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as response:
            return set(json.load(response).get("tags") or ())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return set()
        raise


def split_uri(uri: str) -> tuple[str, str, str]:
    """`127.0.0.1:5000/ns/prep@sha256:...` → (`127.0.0.1:5000`, `ns/prep`, `sha256:...`)."""
    name, digest = uri.split("@", 1)
    registry, repository = name.split("/", 1)
    return registry, repository, digest


def image_of(outputs: dict[str, str], env: str = "prep") -> tuple[str, str, str]:
    return split_uri(json.loads(outputs["images"])[env])


def versions(app: ActApp, domain: str) -> set[str]:
    assert app.control_plane is not None
    return app.control_plane.versions(PROJECT_NAME, domain)


def open_preview(app: ActApp, number: int) -> tuple[str, str, str]:
    opened = app.pull_request("opened", number)
    assert opened.ok, opened.log
    return image_of(opened.outputs)


# ---------------------------------------------------------------------------------------------- act: PRs


def test_act_pull_request_opened_deploys_a_preview(act_app: ActApp) -> None:
    sha = act_app.repo.head_sha
    result = act_app.pull_request("opened", 7)
    assert result.ok, result.log
    assert result.errors() == []
    out = result.outputs
    assert (out["trigger"], out["deployed"], out["version"]) == ("preview", "true", f"pr-7-{sha}")
    # The outputs reach the job's next step through the runner.
    assert f"trigger=preview deployed=true version=pr-7-{sha}" in result.next_step
    registry, repository, digest = image_of(out)
    assert registry_manifest_digest(registry, repository, "pr-7") == digest
    assert versions(act_app, "development") == {f"pr-7-{sha}"}
    assert "## ✅ Flyte deploy · preview of #7 deployed" in result.summary
    [comment] = act_app.api.repos[REPO].comments
    assert comment.issue_number == 7 and comment.body.startswith(comment_marker(PROJECT_NAME))
    [deployment] = act_app.api.repos[REPO].deployments
    assert (deployment.sha, deployment.environment, deployment.state) == (sha, "preview/pr-7", "success")


def test_act_pull_request_synchronize_updates_the_preview_in_place(act_app: ActApp) -> None:
    first = act_app.repo.head_sha
    _, repository, old_digest = open_preview(act_app, 7)
    [comment] = act_app.api.repos[REPO].comments

    second = act_app.repo.commit(
        "louder",
        files={"app/app_lib/text.py": "def shout(name: str) -> str:\n    return name.upper() + '!'\n"},
    )
    result = act_app.pull_request("synchronize", 7)
    assert result.ok, result.log
    registry, new_repository, digest = image_of(result.outputs)
    assert (new_repository, result.outputs["version"]) == (repository, f"pr-7-{second}")
    assert digest != old_digest  # the code changed, so the image did
    assert registry_manifest_digest(registry, repository, "pr-7") == digest
    [updated] = act_app.api.repos[REPO].comments
    assert updated.id == comment.id and digest in updated.body and old_digest not in updated.body
    assert [(d.sha, d.state) for d in act_app.api.repos[REPO].deployments] == [
        (first, "inactive"),
        (second, "success"),
    ]
    assert f"pr-7-{second}" in versions(act_app, "development")


def test_act_pull_request_closed_removes_the_preview_but_keeps_the_commits_images(act_app: ActApp) -> None:
    """Issue 14 item 5: only what belongs to the preview alone goes; the commit's `sha-` image is
    what a release of the merged commit promotes."""
    sha = act_app.repo.head_sha
    registry, repository, digest = open_preview(act_app, 7)

    result = act_app.pull_request("closed", 7, merged=True)
    assert result.ok, result.log
    assert (result.outputs["trigger"], result.outputs["deployed"]) == ("cleanup", "false")
    assert "pr-7" not in tags_of(registry, repository)
    assert all(d.state == "inactive" for d in act_app.api.repos[REPO].deployments)
    [comment] = act_app.api.repos[REPO].comments
    assert "preview of #7 removed" in comment.body
    assert registry_manifest_digest(registry, repository, f"sha-{sha[:7]}") == digest


def test_act_fork_pull_request_builds_but_pushes_and_deploys_nothing(act_app: ActApp) -> None:
    act_app.secrets |= {"FLYTE_API_KEY": "flyte-secret-key"}
    result = act_app.pull_request("opened", 9, head_repo="mallory/app")
    assert result.ok, result.log
    assert (result.outputs["trigger"], result.outputs["deployed"]) == ("build-only", "false")
    assert any("comes from the fork `mallory/app`" in w for w in result.warnings())
    assert "nothing is pushed or deployed" in result.summary
    assert (
        tags_of(
            act_app.vars["REGISTRY"].split("/", 1)[0], act_app.vars["REGISTRY"].split("/", 1)[1] + "/prep"
        )
        == set()
    )
    assert versions(act_app, "development") == set()
    assert act_app.api.calls == []
    logged = [line for line in result.log.splitlines() if not line.startswith("::add-mask::")]
    assert not any("flyte-secret-key" in line for line in logged)
    assert "flyte-secret-key" not in result.next_step


# ---------------------------------------------------------------------------------------------- act: pushes


def test_act_push_to_the_default_branch_deploys_the_commit_to_staging(act_app: ActApp) -> None:
    sha = act_app.repo.head_sha
    result = act_app.push("refs/heads/main")
    assert result.ok, result.log
    assert (result.outputs["trigger"], result.outputs["version"], result.outputs["deployed"]) == (
        "branch",
        sha,
        "true",
    )
    registry, repository, digest = image_of(result.outputs)
    assert registry_manifest_digest(registry, repository, f"sha-{sha[:7]}") == digest
    assert "latest" not in tags_of(registry, repository)
    assert versions(act_app, "staging") == {sha}
    assert act_app.api.calls == []  # a branch deploy leaves PRs alone


def test_act_a_tag_after_the_merged_pull_request_promotes_the_preview_images(act_app: ActApp) -> None:
    """Issue 14 items 5 and 6: the release of a previewed commit retags what the preview built."""
    sha = act_app.repo.head_sha
    registry, repository, digest = open_preview(act_app, 7)
    closed = act_app.pull_request("closed", 7, merged=True)
    assert closed.ok, closed.log

    act_app.repo.tag("v1.2.0", message="release 1.2.0")
    result = act_app.push("refs/tags/v1.2.0")
    assert result.ok, result.log
    out = result.outputs
    assert (out["trigger"], out["version"], out["deployed"]) == ("release", "v1.2.0", "true")
    assert image_of(out) == (registry, repository, digest)
    assert "reused: retagged, no rebuild" in result.summary and "built and pushed" not in result.summary
    for tag in ("1.2.0", "1.2", "1", "latest", f"sha-{sha[:7]}"):
        assert registry_manifest_digest(registry, repository, tag) == digest, tag
    assert versions(act_app, "production") == {"v1.2.0"}


def test_act_push_to_main_of_a_tagged_commit_deploys_the_commit_version(act_app: ActApp) -> None:
    """Issue 14 item 6: only a tag push is a release; a branch deploy never moves semver tags."""
    sha = act_app.repo.head_sha
    act_app.repo.tag("v2.0.0", message="release 2.0.0")
    result = act_app.push("refs/heads/main")
    assert result.ok, result.log
    assert (result.outputs["trigger"], result.outputs["version"]) == ("branch", sha)
    registry, repository, _ = image_of(result.outputs)
    assert tags_of(registry, repository).isdisjoint({"latest", "2.0.0", "2.0", "2"})
    assert versions(act_app, "staging") == {sha}


def test_act_an_older_release_never_moves_latest(act_app: ActApp) -> None:
    """Issue 14 item 6: `latest` never moves to an older semver than the one it has."""
    act_app.repo.tag("v2.0.0", message="release 2.0.0")
    newer = act_app.push("refs/tags/v2.0.0")
    assert newer.ok, newer.log
    registry, repository, newest = image_of(newer.outputs)

    act_app.repo.commit(
        "hotfix", files={"app/app_lib/text.py": "def shout(name: str) -> str:\n    return name\n"}
    )
    act_app.repo.tag("v1.9.1", message="hotfix of 1.9")
    older = act_app.push("refs/tags/v1.9.1")
    assert older.ok, older.log
    _, _, hotfix = image_of(older.outputs)
    assert hotfix != newest
    assert registry_manifest_digest(registry, repository, "1.9.1") == hotfix
    assert registry_manifest_digest(registry, repository, "latest") == newest


def test_act_broken_code_fails_the_job_with_an_annotation_on_the_culprit_line(act_app: ActApp) -> None:
    act_app.repo.commit("break it", files=BROKEN)
    result = act_app.push("refs/heads/main")
    assert result.returncode != 0 and result.steps["deploy"] == "failure"
    assert result.step_exit == 1
    [(_, properties, _)] = [a for a in result.annotations if a[0] == "error"]
    assert properties["file"] == "app/app_lib/text.py" and "line" in properties
    assert "discovery error" in properties["title"]
    assert "deployed=false" in result.next_step
    registry, namespace = act_app.vars["REGISTRY"].split("/", 1)
    assert tags_of(registry, f"{namespace}/prep") == set()
    assert "Traceback" not in result.log


# ---------------------------------------------------------------------------------------------- act: setup


def test_act_without_an_endpoint_a_deploy_fails_with_one_line(make_act_app: Any) -> None:
    """Issue 14 item 2: no pretend deploy into a control plane that dies with the job."""
    app = make_act_app(control_plane=None)
    result = app.push("refs/heads/main")
    assert result.steps["deploy"] == "failure" and result.step_exit != 0
    [error] = result.errors()
    assert "endpoint" in error
    assert result.outputs["deployed"] == "false"
    assert "Traceback" not in result.log
    registry, namespace = app.vars["REGISTRY"].split("/", 1)
    assert tags_of(registry, f"{namespace}/prep") == set()


def test_act_without_an_endpoint_a_dry_run_still_plans(make_act_app: Any) -> None:
    app = make_act_app(control_plane=None, dry_run="true")
    result = app.push("refs/heads/main")
    assert result.ok, result.log
    assert (result.outputs["deployed"], result.outputs["version"]) == ("false", app.repo.head_sha)


def test_act_builds_the_action_from_its_dockerfile(make_act_app: Any, act_control_plane: Any) -> None:
    """`uses: ./` with `runs.image: Dockerfile`, as this repository's own workflows run it."""
    app = make_act_app(build=True, control_plane=act_control_plane)
    result = app.push("refs/heads/main")
    assert result.ok, result.log
    assert "docker build -t act-dockeraction" in result.raw
    assert (result.outputs["trigger"], result.outputs["deployed"]) == ("branch", "true")


# ---------------------------------------------------------------------------------------------- runner flags


def _workspace(make_git_repo: Any, files: dict[str, str] | None = None) -> GitRepo:
    repo: GitRepo = make_git_repo("checkout", files=PROJECT | (files or {}))
    return repo


def pull_payload(action: str, number: int, sha: str, *, head_repo: str = REPO) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": sha, "ref": "feature", "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    }


def push_payload(ref: str, sha: str) -> dict[str, Any]:
    return {"ref": ref, "after": sha, "repository": {"full_name": REPO, "default_branch": "main"}}


APP_INPUTS = {"path": "app/workflows.py", "all": "true", "root_dir": "app"}
# A deploy needs an endpoint; broken code fails while it is planned, before the plane is called.
UNREACHED_PLANE = {"endpoint": "dns:///flyte.invalid:443"}


def mirror(flyte_base_image: str) -> str:
    return f"ghcr.io/flyteorg/flyte={flyte_base_image.rsplit(':', 1)[0]}"


def test_github_flags_preview_with_the_control_plane_and_registry_as_job_services(
    make_git_repo: Any,
    make_github_runner: Any,
    services: ServiceNetwork,
    github_api: GitHubAPIServer,
    action_image: str,
    flyte_base_image: str,
    unique_repo: str,
) -> None:
    """A job with `services:` (control plane, registry): the action runs on `github_network_<id>`,
    the engine pushes to the registry's port published on the runner host. Issue 14 item 3: that
    address answers only on the host, and the deploy must still work (or fail before building,
    saying why)."""
    plane = services.control_plane(action_image)
    registry = services.registry()
    repo = _workspace(make_git_repo)
    sha = repo.head_sha
    github_api.add_pull(REPO, 5, head_sha=sha)
    result = make_github_runner(repo.path, services).run(
        "pull_request",
        pull_payload("opened", 5, sha),
        ref="refs/pull/5/merge",
        sha="f" * 40,
        registry=f"{registry.host_address}/{unique_repo}",
        base_image_mirror=mirror(flyte_base_image),
        endpoint=plane.endpoint,
        **APP_INPUTS,
    )
    # Reached through the job network whatever the registry does: the preview's deployment opened.
    assert [d.environment for d in github_api.repos[REPO].deployments] == ["preview/pr-5"]
    if not deployed_or_refused_before_building(result, registry.host_address, unique_repo):
        return
    host, repository, digest = image_of(result.outputs)
    assert registry_manifest_digest(host, repository, "pr-5") == digest
    assert plane.versions(PROJECT_NAME, "development") == {f"pr-5-{sha}"}
    [comment] = github_api.repos[REPO].comments
    assert comment.issue_number == 5


def test_github_flags_a_registry_only_the_runner_host_reaches(
    make_git_repo: Any,
    make_github_runner: Any,
    bridge_services: ServiceNetwork,
    action_image: str,
    registry_url: str,
    flyte_base_image: str,
    unique_repo: str,
) -> None:
    """A job without `services:`: the action is on the default bridge, the registry listens on the
    runner host's 127.0.0.1 (a self-hosted runner's local registry), the control plane elsewhere.
    Issue 14 item 3."""
    plane = bridge_services.control_plane(action_image)
    repo = _workspace(make_git_repo)
    sha = repo.head_sha
    result = make_github_runner(repo.path, bridge_services).run(
        "push",
        push_payload("refs/heads/main", sha),
        ref="refs/heads/main",
        sha=sha,
        registry=f"{registry_url}/{unique_repo}",
        base_image_mirror=mirror(flyte_base_image),
        endpoint=plane.endpoint,
        **APP_INPUTS,
    )
    if not deployed_or_refused_before_building(result, registry_url, unique_repo):
        return
    host, repository, digest = image_of(result.outputs)
    assert registry_manifest_digest(host, repository, f"sha-{sha[:7]}") == digest
    assert plane.versions(PROJECT_NAME, "staging") == {sha}


def deployed_or_refused_before_building(result: RunnerResult, registry: str, namespace: str) -> bool:
    """Issue 14 item 3 allows two outcomes: the deploy works (True), or it stops before building with
    one line that names the registry and explains, not a raw connection error (False). Anything else
    (a failure after the build, a traceback, an exception's text) fails the test."""
    if result.exit_code == 0:
        assert result.outputs["deployed"] == "true", result.log
        return True
    assert result.tracebacks == 0, result.log
    [error] = result.errors
    assert registry in error and "[Errno" not in error, error
    assert tags_of(registry, f"{namespace}/prep") == set(), result.log
    return False


def test_github_flags_leave_nothing_root_owned_in_the_workspace(
    make_git_repo: Any, make_github_runner: Any, bridge_services: ServiceNetwork, flyte_base_image: str
) -> None:
    """Issue 14 item 4: the container runs as root, the checkout belongs to the runner's user; a fork
    PR (build only: needs no registry or control plane) must leave the workspace as it found it."""
    repo = _workspace(make_git_repo)
    sha = repo.head_sha
    result = make_github_runner(repo.path, bridge_services).run(
        "pull_request",
        pull_payload("opened", 6, sha, head_repo="mallory/app"),
        ref="refs/pull/6/merge",
        sha="e" * 40,
        base_image_mirror=mirror(flyte_base_image),
        **APP_INPUTS,
    )
    assert result.exit_code == 0, result.log
    assert (result.outputs["trigger"], result.outputs["deployed"]) == ("build-only", "false")
    assert result.root_owned() == []


def test_github_flags_broken_code_fails_with_an_annotation_relative_to_the_checkout(
    make_git_repo: Any, make_github_runner: Any, bridge_services: ServiceNetwork
) -> None:
    repo = _workspace(make_git_repo, BROKEN)
    sha = repo.head_sha
    result = make_github_runner(repo.path, bridge_services).run(
        "push",
        push_payload("refs/heads/main", sha),
        ref="refs/heads/main",
        sha=sha,
        **APP_INPUTS,
        **UNREACHED_PLANE,
    )
    assert result.exit_code == 1
    [error] = result.errors
    assert error.startswith("::error file=app/app_lib/text.py,line=")
    assert result.outputs["deployed"] == "false" and result.tracebacks == 0
    assert "app_lib/text.py" in result.summary


@pytest.mark.parametrize(
    ("inputs", "files", "exit_code", "message"),
    [
        ({"mode": "kubernetes"}, {}, 2, "input `mode`"),
        ({}, BROKEN, 1, "app/app_lib/text.py"),
    ],
    ids=["bad-input", "broken-code"],
)
def test_github_flags_a_failure_without_file_commands_keeps_its_exit_code(
    make_git_repo: Any,
    make_github_runner: Any,
    bridge_services: ServiceNetwork,
    inputs: dict[str, str],
    files: dict[str, str],
    exit_code: int,
    message: str,
) -> None:
    """No /github/file_commands mount, GITHUB_OUTPUT still naming a file in it: the failure is
    reported once, with its documented exit code, and no traceback."""
    repo = _workspace(make_git_repo, files)
    sha = repo.head_sha
    result = make_github_runner(repo.path, bridge_services).run(
        "push",
        push_payload("refs/heads/main", sha),
        ref="refs/heads/main",
        sha=sha,
        file_commands=False,
        **(APP_INPUTS | UNREACHED_PLANE | inputs),
    )
    assert result.exit_code == exit_code, result.log
    assert result.tracebacks == 0, result.log
    [error] = result.errors
    assert message in error

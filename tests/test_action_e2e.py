"""The action image, built from `Dockerfile` and run the way the GitHub runner runs a container action:
`--workdir /github/workspace`, the checkout, `/github/workflow` (event payload), `/github/file_commands`
(GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and the Docker socket mounted, `INPUT_*`/`GITHUB_*` in the
environment, host networking so it reaches the stack's registry and the local GitHub API.

Images are built by the host engine through the socket and pushed to the stack's registry; tasks go
to a control plane on the host (our server, in the test process), which outlives each run as a real
one would.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskStore
from deployer.report.render import comment_marker
from tests.fixtures.github import read_outputs
from tests.fixtures.stack import registry_manifest_digest
from tests.githubapi import GitHubAPIServer

pytestmark = pytest.mark.stack

REPO = "acme/app"
TOKEN = "ghs_e2e_write_token"
# What a GitHub runner's checkout looks like from inside the container: owned by the runner's user.
RUNNER_UID = 1001
PROJECT = {
    "workflows.py": (
        "import flyte\n"
        "\n"
        "from app_lib.text import shout\n"
        "\n"
        "image = flyte.Image.from_debian_base(python_version=(3, 11))\n"
        'prep = flyte.TaskEnvironment(name="prep", image=image)\n'
        'analysis = flyte.TaskEnvironment(name="analysis", image=image, depends_on=[prep])\n'
        "\n"
        "\n"
        "@prep.task\n"
        "async def clean(text: str) -> str:\n"
        '    return " ".join(text.split())\n'
        "\n"
        "\n"
        "@analysis.task\n"
        "async def greet(name: str) -> str:\n"
        '    return f"Hello, {shout(name)}!"\n'
    ),
    "app_lib/__init__.py": "",
    "app_lib/text.py": "def shout(name: str) -> str:\n    return name.upper()\n",
    ".gitignore": ".flyte-deploy/\n",
}


# ---------------------------------------------------------------------------------------------- the image


def test_the_action_image_is_small_and_has_no_build_tools(docker_client: Any, action_image: str) -> None:
    image = docker_client.images.get(action_image)
    assert image.attrs["Config"]["Entrypoint"] == ["python", "-m", "entrypoint"]
    # The stack's Python base is ~145 MB; flyte and its dependencies are most of the rest.
    assert image.attrs["Size"] < 600 * 1024 * 1024, image.attrs["Size"]
    probe = docker_client.containers.run(
        action_image,
        entrypoint=["sh", "-c", "command -v gcc cc make docker || true; git --version"],
        remove=True,
    ).decode()
    assert probe.strip().startswith("git version"), probe


# ---------------------------------------------------------------------------------------------- a runner


@dataclass
class ActionResult:
    exit_code: int
    log: str
    outputs: dict[str, str]
    summary: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.startswith("::error")]


class Runner:
    """Runs the action image like the GitHub runner does, against one checkout."""

    def __init__(
        self,
        docker_client: Any,
        image: str,
        repo: Any,
        root: Path,
        api: GitHubAPIServer,
        registry: str,
        flyte_base_image: str,
        plane: ControlPlaneServer,
    ) -> None:
        self.plane = plane
        self.docker = docker_client
        self.image = image
        self.repo = repo
        self.root = root
        self.api = api
        self.registry = registry
        self.flyte_base_image = flyte_base_image
        self.runs = 0

    def run(
        self, event_name: str, payload: dict[str, Any], *, ref: str, sha: str, **inputs: str
    ) -> ActionResult:
        self.runs += 1
        workflow, commands = self.root / f"workflow-{self.runs}", self.root / f"file_commands-{self.runs}"
        workflow.mkdir()
        commands.mkdir()
        (workflow / "event.json").write_text(json.dumps(payload))
        output, summary = f"set_output_{uuid.uuid4().hex}", f"step_summary_{uuid.uuid4().hex}"
        for name in (output, summary):
            (commands / name).touch()
        env = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_OUTPUT": f"/github/file_commands/{output}",
            "GITHUB_STEP_SUMMARY": f"/github/file_commands/{summary}",
            "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_API_URL": self.api.url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": "777",
            "GITHUB_REF": ref,
            "GITHUB_SHA": sha,
            "GITHUB_ACTOR": "octocat",
            "FLYTE_DEPLOY_GITHUB_THROTTLE": "0",
            "FLYTE_DEPLOY_GITHUB_BACKOFF": "0",
            "INPUT_PATH": "workflows.py",
            "INPUT_ALL": "true",
            "INPUT_REGISTRY": self.registry,
            "INPUT_BASE-IMAGE-MIRROR": f"ghcr.io/flyteorg/flyte={self.flyte_base_image.rsplit(':', 1)[0]}",
            "INPUT_GITHUB-TOKEN": TOKEN,
            "INPUT_COMMENT": "true",
            "INPUT_PUSH": "auto",
            # Host networking: the control plane on 127.0.0.1 outlives the job, as a real one would.
            "INPUT_ENDPOINT": self.plane.url,
        } | {f"INPUT_{k.replace('_', '-').upper()}": v for k, v in inputs.items()}
        socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
        _chown(self.repo.path, RUNNER_UID)
        try:
            container = self.docker.containers.run(
                self.image,
                detach=True,
                network_mode="host",
                working_dir="/github/workspace",
                environment=env,
                volumes={
                    str(self.repo.path): {"bind": "/github/workspace", "mode": "rw"},
                    str(workflow): {"bind": "/github/workflow", "mode": "rw"},
                    str(commands): {"bind": "/github/file_commands", "mode": "rw"},
                    socket: {"bind": "/var/run/docker.sock", "mode": "rw"},
                },
            )
            try:
                exit_code = container.wait(timeout=600)["StatusCode"]
                log = container.logs(stdout=True, stderr=True).decode(errors="replace")
            finally:
                container.remove(force=True)
        finally:
            _chown(self.repo.path, 0)
        return ActionResult(exit_code, log, read_outputs(commands / output), (commands / summary).read_text())

    def store(self) -> TaskStore:
        return self.plane.store


def _chown(top: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, uid)
    os.lchown(top, uid, uid)


@pytest.fixture
def runner(
    docker_client: Any,
    action_image: str,
    make_git_repo: Any,
    tmp_path: Path,
    github_api: GitHubAPIServer,
    registry_url: str,
    flyte_base_image: str,
    unique_repo: str,
    controlplane: ControlPlaneServer,
) -> Iterator[Runner]:
    github_api.add_token(TOKEN)
    github_api.add_repo(REPO)
    repo = make_git_repo("app", files=PROJECT)
    yield Runner(
        docker_client,
        action_image,
        repo,
        tmp_path,
        github_api,
        f"{registry_url}/{unique_repo}",
        flyte_base_image,
        controlplane,
    )


def pull_event(action: str, number: int, sha: str, *, head_repo: str = REPO) -> dict[str, Any]:
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


def push_event(ref: str, sha: str) -> dict[str, Any]:
    return {"ref": ref, "after": sha, "repository": {"full_name": REPO, "default_branch": "main"}}


def tags_of(registry_url: str, repository: str) -> set[str]:
    with urllib.request.urlopen(f"http://{registry_url}/v2/{repository}/tags/list", timeout=10) as response:
        return set(json.load(response).get("tags") or ())


def _repository(uri: str) -> tuple[str, str]:
    """`127.0.0.1:5000/ns/prep@sha256:...` → (`ns/prep`, `sha256:...`)."""
    name, digest = uri.split("@", 1)
    return name.split("/", 1)[1], digest


# ---------------------------------------------------------------------------------------------- scenarios


def test_pull_request_preview_is_updated_in_place_and_cleaned_up(runner: Runner, registry_url: str) -> None:
    api, repo = runner.api, runner.repo
    first = repo.head_sha
    api.add_pull(REPO, 31, head_sha=first)

    opened = runner.run(
        "pull_request", pull_event("opened", 31, first), ref="refs/pull/31/merge", sha="f" * 40
    )
    assert opened.exit_code == 0, opened.log
    assert opened.errors == []
    out = opened.outputs
    assert (out["trigger"], out["deployed"], out["version"]) == ("preview", "true", f"pr-31-{first}")
    images = json.loads(out["images"])
    assert set(images) == {"prep", "analysis"}
    repository, digest = _repository(images["prep"])
    assert registry_manifest_digest(registry_url, repository, "pr-31") == digest
    assert registry_manifest_digest(registry_url, repository, f"sha-{first[:7]}") == digest
    assert out["image-args"] == f"--image prep={images['prep']} --image analysis={images['analysis']}"
    assert "::group::flyte-deploy: preview → flytesnacks/development" in opened.log
    assert "## ✅ Flyte deploy · preview of #31 deployed" in opened.summary
    assert f"| prep | `{images['prep']}` |" in opened.summary
    [comment] = api.repos[REPO].comments
    assert comment.body.startswith(comment_marker("flytesnacks"))
    assert f"`{images['analysis']}`" in comment.body

    second = repo.commit(
        "louder", files={"app_lib/text.py": "def shout(name: str) -> str:\n    return name.upper() + '!'\n"}
    )
    api.add_pull(REPO, 31, head_sha=second)
    synced = runner.run(
        "pull_request", pull_event("synchronize", 31, second), ref="refs/pull/31/merge", sha="e" * 40
    )
    assert synced.exit_code == 0, synced.log
    new_uri = json.loads(synced.outputs["images"])["prep"]
    assert new_uri != images["prep"]  # the code changed, so the image did
    [updated] = api.repos[REPO].comments
    assert updated.id == comment.id and f"`{new_uri}`" in updated.body and images["prep"] not in updated.body
    deployments = api.repos[REPO].deployments
    assert [(d.sha, d.environment, d.state) for d in deployments] == [
        (first, "preview/pr-31", "inactive"),
        (second, "preview/pr-31", "success"),
    ]
    assert registry_manifest_digest(registry_url, repository, "pr-31") == _repository(new_uri)[1]

    closed = runner.run(
        "pull_request", pull_event("closed", 31, second), ref="refs/pull/31/merge", sha="e" * 40
    )
    assert closed.exit_code == 0, closed.log
    assert closed.outputs == {"trigger": "cleanup", "deployed": "false"}
    assert "pr-31" not in tags_of(registry_url, repository)
    assert runner.store().latest_tasks(org="", project="flytesnacks", domain="development") == []
    assert all(d.state == "inactive" for d in deployments)
    [final] = api.repos[REPO].comments
    assert final.id == comment.id and "preview of #31 removed" in final.body
    assert f"Registry tags removed: `{registry_url}/{repository}:pr-31`" in closed.summary


def test_a_release_tag_promotes_the_images_built_for_its_commit(runner: Runner, registry_url: str) -> None:
    sha = runner.repo.head_sha
    main = runner.run("push", push_event("refs/heads/main", sha), ref="refs/heads/main", sha=sha)
    assert main.exit_code == 0, main.log
    assert (main.outputs["trigger"], main.outputs["version"]) == ("branch", sha)
    built = json.loads(main.outputs["images"])["prep"]
    assert "built and pushed" in main.summary

    runner.repo.tag("v1.4.0", message="release 1.4.0")
    release = runner.run("push", push_event("refs/tags/v1.4.0", sha), ref="refs/tags/v1.4.0", sha=sha)
    assert release.exit_code == 0, release.log
    assert (release.outputs["trigger"], release.outputs["version"], release.outputs["deployed"]) == (
        "release",
        "v1.4.0",
        "true",
    )
    # Same digest, new tags: promoted, not rebuilt.
    assert json.loads(release.outputs["images"])["prep"] == built
    assert "reused: retagged, no rebuild" in release.summary and "built and pushed" not in release.summary
    repository, digest = _repository(built)
    for tag in ("1.4.0", "1.4", "1", "latest", f"sha-{sha[:7]}"):
        assert registry_manifest_digest(registry_url, repository, tag) == digest, tag
    production = runner.store().latest_tasks(org="", project="flytesnacks", domain="production")
    staging = runner.store().latest_tasks(org="", project="flytesnacks", domain="staging")
    assert {t.key.version for t in production} == {"v1.4.0"} and {t.key.version for t in staging} == {sha}
    assert all(t.spec.task_template.container.image == built for t in production)
    assert runner.api.calls == []  # releases and branch deploys leave PRs alone


def test_a_fork_pull_request_builds_but_pushes_and_deploys_nothing(
    runner: Runner, registry_url: str, docker_client: Any
) -> None:
    sha = runner.repo.head_sha
    result = runner.run(
        "pull_request",
        pull_event("opened", 32, sha, head_repo="mallory/app"),
        ref="refs/pull/32/merge",
        sha="d" * 40,
        api_key="flyte-secret-key",
        registry_password="registry-secret",
        registry_username="bot",
    )
    assert result.exit_code == 0, result.log
    assert result.outputs["trigger"] == "build-only" and result.outputs["deployed"] == "false"
    assert (
        "::warning title=flyte-deploy%3A build only::Pull request #32 comes from the fork `mallory/app`"
        in result.log
    )
    assert "nothing is pushed or deployed" in result.summary
    assert "| not deployed |" in result.summary
    # Built by the host's engine under a registry-less name, never pushed, nothing registered, GitHub
    # untouched.
    local = json.loads(result.outputs["images"])["prep"]
    assert local.startswith("prep:build-")
    docker_client.images.get(local)
    assert f"| prep | `{local}` |" in result.summary and "not pushed |" in result.summary
    with pytest.raises(urllib.error.HTTPError):
        tags_of(registry_url, runner.registry.split("/", 1)[1] + "/prep")
    assert not (runner.repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()
    assert runner.api.calls == []
    assert "flyte-secret-key" not in result.log.replace("::add-mask::flyte-secret-key", "")


def test_a_broken_project_fails_with_an_annotation_on_the_culprit_line(
    runner: Runner, registry_url: str
) -> None:
    sha = runner.repo.commit(
        "break it", files={"app_lib/text.py": "def shout(name: str) -> str:\n    return name.upper(\n"}
    )
    result = runner.run("push", push_event("refs/heads/main", sha), ref="refs/heads/main", sha=sha)
    assert result.exit_code != 0
    [error] = result.errors
    assert error.startswith("::error file=app_lib/text.py,line=")
    assert "title=flyte-deploy%3A discovery error" in error
    assert result.outputs["deployed"] == "false"
    assert "❌" in result.summary and "app_lib/text.py" in result.summary
    with pytest.raises(urllib.error.HTTPError):
        tags_of(registry_url, runner.registry.split("/", 1)[1] + "/prep")
    assert not (runner.repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()


def test_a_bad_input_stops_before_anything_is_built(runner: Runner, registry_url: str) -> None:
    sha = runner.repo.head_sha
    result = runner.run(
        "push", push_event("refs/heads/main", sha), ref="refs/heads/main", sha=sha, mode="kubernetes"
    )
    assert result.exit_code == 2
    assert result.errors == [
        "::error title=flyte-deploy%3A bad input::input `mode`: 'kubernetes' is not valid "
        "(use one of: auto, container, bundle)"
    ]
    assert result.outputs == {"deployed": "false"}
    assert "input `mode`" in result.summary
    with pytest.raises(urllib.error.HTTPError):
        tags_of(registry_url, runner.registry.split("/", 1)[1] + "/prep")


def test_cleanup_keeps_the_last_push_and_what_others_use_and_deletes_the_rest(
    docker_client: Any,
    python_base_image: str,
    flyte_base_image: str,
    registry_url: str,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    """Distribution 2.x deletes only whole manifests: `pr-N` goes alone (through a tombstone), the last
    push's image stays for the release of the merged code, an earlier push's image goes unless a branch
    or a release also uses it."""
    from deployer.controlplane.embedded import EmbeddedControlPlane
    from deployer.preview import cleanup_preview
    from deployer.request import DeployRequest

    old, head, main_sha = "1234567" + "0" * 33, "89abcde" + "0" * 33, "7654321" + "0" * 33
    preview, shared = f"{registry_url}/{unique_repo}/preview", f"{registry_url}/{unique_repo}/shared"
    earlier, last = docker_client.images.get(flyte_base_image), docker_client.images.get(python_base_image)
    for repository, image, tags in (
        (preview, earlier, ("build-" + "a" * 32, f"sha-{old[:7]}")),
        (preview, last, ("pr-9", "build-" + "b" * 32, f"sha-{head[:7]}")),
        (shared, earlier, ("build-" + "c" * 32, f"sha-{old[:7]}", f"sha-{main_sha[:7]}")),
        (shared, last, ("pr-9", f"sha-{head[:7]}")),
    ):
        for tag in tags:
            image.tag(repository, tag)
            docker_client.images.push(repository, tag)
            docker_client.images.remove(f"{repository}:{tag}")
    last_digest = registry_manifest_digest(registry_url, f"{unique_repo}/preview", f"sha-{head[:7]}")

    request = DeployRequest.of(root_dir=tmp_path, registry=f"{registry_url}/{unique_repo}")
    result = cleanup_preview(
        request,
        EmbeddedControlPlane(tmp_path / ".flyte-deploy"),
        9,
        prefix="pr-9-",
        head=head,
        shas=[old, head],
        repositories=[preview, shared],
    )
    assert result.removed_tags == (f"{preview}:pr-9", f"{shared}:pr-9")
    assert tags_of(registry_url, f"{unique_repo}/preview") == {"build-" + "b" * 32, f"sha-{head[:7]}"}
    assert registry_manifest_digest(registry_url, f"{unique_repo}/preview", f"sha-{head[:7]}") == last_digest
    assert [image.split("@")[0] for image in result.removed_images] == [preview]
    assert tags_of(registry_url, f"{unique_repo}/shared") == {
        "build-" + "c" * 32,
        f"sha-{old[:7]}",
        f"sha-{main_sha[:7]}",
        f"sha-{head[:7]}",
    }
    [warning] = result.warnings
    assert warning.startswith(f"kept {shared}@sha256:") and warning.endswith(
        f"also tagged sha-{main_sha[:7]}"
    )

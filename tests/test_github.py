"""GitHub: the local API (validated against GitHub's OpenAPI description), our PyGithub reporter, and
the action's GitHub side effects over whole runs (in-process, bundle mode, embedded control plane).

The Docker-run versions of these scenarios are in test_action_e2e.py.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployer.controlplane.embedded import EmbeddedControlPlane
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskStore
from deployer.report.github import GitHubReporter, GitHubSettings
from deployer.report.render import comment_marker
from entrypoint.action import main
from tests.fixtures.github import read_outputs
from tests.githubapi import GitHubAPIServer
from tests.githubapi.state import Comment

REPO = "acme/app"
TOKEN = "ghs_writer_token"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"


def reporter(
    server: GitHubAPIServer, warnings: list[str], *, token: str = TOKEN, retries: int = 2
) -> GitHubReporter:
    settings = GitHubSettings(
        repository=REPO,
        token=token,
        api_url=server.url,
        retries=retries,
        backoff_seconds=0,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    return GitHubReporter(settings, warn=warnings.append)


@pytest.fixture
def api(github_api: GitHubAPIServer) -> GitHubAPIServer:
    github_api.add_token(TOKEN)
    github_api.add_pull(REPO, 7, head_sha="c" * 40)
    return github_api


# ---------------------------------------------------------------------------------------------- the local API


def test_unknown_endpoints_and_invalid_bodies_are_recorded_as_failures(api: GitHubAPIServer) -> None:
    headers = {"Authorization": f"token {TOKEN}"}
    with httpx.Client(base_url=api.url, headers=headers) as client:
        assert client.get(f"/repos/{REPO}/pulls/7/files").status_code == 404
        assert client.post(f"/repos/{REPO}/issues/7/comments", json={"text": "hi"}).status_code == 422
        assert (
            client.post(f"/repos/{REPO}/deployments", json={"ref": "main", "environment": 3}).status_code
            == 422
        )
    assert api.failures[0] == f"unknown endpoint: GET /repos/{REPO}/pulls/7/files"
    assert "invalid request POST /repos/acme/app/issues/7/comments" in api.failures[1]
    assert "body" in api.failures[1]
    assert "invalid request POST /repos/acme/app/deployments" in api.failures[2]
    assert api.repos[REPO].comments == [] and api.repos[REPO].deployments == []
    api.failures.clear()  # recorded as intended: do not fail this test at teardown


def test_responses_are_the_descriptions_examples_made_about_our_repository(api: GitHubAPIServer) -> None:
    api.add_pull(REPO, 8, head_sha="d" * 40, head_ref="topic", head_repo="fork-owner/app")
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        pull = client.get(f"/repos/{REPO}/pulls/8").json()
        unauthenticated = client.get(f"/repos/{REPO}", headers={"Authorization": ""})
    assert (pull["number"], pull["head"]["sha"], pull["head"]["ref"]) == (8, "d" * 40, "topic")
    assert pull["head"]["repo"]["full_name"] == "fork-owner/app" and pull["head"]["repo"]["fork"] is True
    assert pull["base"]["repo"]["full_name"] == REPO
    assert pull["url"] == f"{api.url}/repos/{REPO}/pulls/8"
    assert "api.github.com" not in json.dumps(pull)
    assert unauthenticated.status_code == 401


def test_a_read_only_token_cannot_write(api: GitHubAPIServer) -> None:
    api.add_token("ghs_fork_token", "read")
    warnings: list[str] = []
    gh = reporter(api, warnings, token="ghs_fork_token")
    assert gh.upsert_comment(7, "<!-- m -->", "<!-- m -->\nhello") is None
    assert api.repos[REPO].comments == []
    assert warnings == [
        "GitHub: could not update the comment on pull request #7: HTTP 403: Resource not accessible by "
        "integration (the token lacks permission: grant `pull-requests: write` and `deployments: write`)"
    ]
    # Permissions do not come back by retrying.
    assert len([c for c in api.calls if c.method == "POST"]) == 1


# ---------------------------------------------------------------------------------------------- the reporter


def test_the_sticky_comment_is_found_past_the_first_page_and_updated_in_place(api: GitHubAPIServer) -> None:
    repo = api.repos[REPO]
    repo.comments.extend(
        Comment(id=10_000 + i, issue_number=7, body=f"LGTM {i}", user="octocat") for i in range(150)
    )
    warnings: list[str] = []
    gh = reporter(api, warnings)
    marker = comment_marker("flytesnacks")
    first = gh.upsert_comment(7, marker, f"{marker}\nversion one")
    second = gh.upsert_comment(7, marker, f"{marker}\nversion two")
    ours = [c for c in repo.comments if c.body.startswith(marker)]
    assert first is not None and second is not None and first.created and not second.created
    assert [c.id for c in ours] == [first.id] == [second.id]
    assert ours[0].body.endswith("version two")
    assert len(repo.comments) == 151
    # Listing 151 comments at 100 per page is two pages.
    pages = [c for c in api.calls if c.method == "GET" and c.path.endswith("/issues/7/comments")]
    assert {c.query.get("page", ["1"])[0] for c in pages} == {"1", "2"}
    assert warnings == []


def test_a_comment_whose_create_response_was_lost_is_not_duplicated(api: GitHubAPIServer) -> None:
    api.fail("POST", r"/issues/7/comments$", 502, after=True)
    warnings: list[str] = []
    marker = comment_marker("p")
    ref = reporter(api, warnings).upsert_comment(7, marker, f"{marker}\nbody")
    assert ref is not None
    assert [c.body for c in api.repos[REPO].comments] == [f"{marker}\nbody"]
    assert warnings == []


def test_server_errors_are_retried_a_bounded_number_of_times_then_warned(api: GitHubAPIServer) -> None:
    api.fail("POST", r"/deployments$", 503, times=2)
    warnings: list[str] = []
    gh = reporter(api, warnings, retries=2)
    deployment_id = gh.ensure_deployment(
        sha="c" * 40,
        environment="preview/pr-7",
        description="d",
        payload={},
        transient=True,
        production=False,
    )
    assert deployment_id is not None and warnings == []

    api.fail("POST", r"/statuses$", 500, times=10)
    assert gh.set_status(deployment_id, "success", description="ok") is False
    assert warnings == [
        f"GitHub: could not set deployment {deployment_id} to success: HTTP 500: Server Error"
    ]
    assert len([c for c in api.calls if c.path.endswith("/statuses")]) == 3  # 1 + 2 retries


def test_an_unreachable_github_is_a_warning_after_bounded_retries() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    warnings: list[str] = []
    settings = GitHubSettings(
        repository=REPO,
        token=TOKEN,
        api_url=f"http://127.0.0.1:{port}",
        retries=1,
        backoff_seconds=0,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    gh = GitHubReporter(settings, warn=warnings.append)
    assert gh.upsert_comment(7, "<!-- m -->", "<!-- m -->\nx") is None
    assert gh.deactivate("preview/pr-7", description="closed") == []
    assert len(warnings) == 2 and all("ConnectionError" in w for w in warnings)


def test_deployments_are_reused_per_commit_and_older_ones_deactivated(api: GitHubAPIServer) -> None:
    warnings: list[str] = []
    gh = reporter(api, warnings)
    kwargs: dict[str, Any] = {
        "environment": "preview/pr-7",
        "description": "d",
        "payload": {"flyte_deploy": 1},
        "transient": True,
        "production": False,
    }
    first = gh.ensure_deployment(sha="1" * 40, **kwargs)
    again = gh.ensure_deployment(sha="1" * 40, **kwargs)
    second = gh.ensure_deployment(sha="2" * 40, **kwargs)
    assert first is not None and second is not None
    assert first == again and first != second
    for deployment_id in (first, second):
        gh.set_status(deployment_id, "success", description="ok")
    assert gh.deactivate("preview/pr-7", keep=second, description="superseded") == [first]
    states = {d.id: d.state for d in api.repos[REPO].deployments}
    assert states == {first: "inactive", second: "success"}
    assert gh.deployment_payloads("preview/pr-7") == [{"flyte_deploy": 1}, {"flyte_deploy": 1}]
    assert warnings == []


# ---------------------------------------------------------------------------------------------- whole runs


class Workspace:
    """A repository checked out for the action, plus the runner's files for one run."""

    def __init__(self, repo: Any, root: Path, api: GitHubAPIServer, plane: ControlPlaneServer) -> None:
        self.repo = repo
        self.root = root
        self.api = api
        self.plane = plane

    def run(
        self, event_name: str, payload: dict[str, Any], env: dict[str, str] | None = None, **inputs: str
    ) -> tuple[int, str, dict[str, str], str]:
        files = self.root / "runner"
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir()
        (files / "event.json").write_text(json.dumps(payload))
        env = (
            {
                "GITHUB_EVENT_NAME": event_name,
                "GITHUB_EVENT_PATH": str(files / "event.json"),
                "GITHUB_OUTPUT": str(files / "output"),
                "GITHUB_STEP_SUMMARY": str(files / "summary"),
                "GITHUB_WORKSPACE": str(self.repo.path),
                "GITHUB_REPOSITORY": REPO,
                "GITHUB_API_URL": self.api.url,
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_RUN_ID": "4242",
                "GITHUB_REF": payload.get("ref", f"refs/pull/{payload.get('number')}/merge"),
                "GITHUB_SHA": self.repo.head_sha,
                "GIT_CONFIG_GLOBAL": str(self.root / "gitconfig"),
                "FLYTE_DEPLOY_GITHUB_THROTTLE": "0",
                "FLYTE_DEPLOY_GITHUB_BACKOFF": "0",
                "INPUT_PATH": "workflows.py",
                "INPUT_ALL": "true",
                "INPUT_MODE": "bundle",
                "INPUT_GITHUB-TOKEN": TOKEN,
                "INPUT_ENDPOINT": self.plane.url,
                "RUNNER_TEMP": str(self.root / "runner-temp"),
            }
            | {f"INPUT_{k.replace('_', '-').upper()}": v for k, v in inputs.items()}
            | (env or {})
        )
        stream = io.StringIO()
        code = main(env, stream)
        summary = files / "summary"
        return (
            code,
            stream.getvalue(),
            read_outputs(files / "output"),
            summary.read_text() if summary.exists() else "",
        )

    def store(self) -> TaskStore:
        return self.plane.store


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


@pytest.fixture
def workspace(
    make_git_repo: Any, tmp_path: Path, api: GitHubAPIServer, controlplane: ControlPlaneServer
) -> Workspace:
    files = {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*.py")}
    repo = make_git_repo("app", files=files | {".gitignore": ".flyte-deploy/\n"})
    return Workspace(repo, tmp_path, api, controlplane)


def test_a_pull_request_gets_one_comment_updated_in_place_and_a_cleanup_on_close(
    workspace: Workspace,
) -> None:
    api, repo = workspace.api, workspace.repo
    first = repo.head_sha
    api.add_pull(REPO, 21, head_sha=first)

    console = "https://flyte.example.com/v2/domain/{domain}/project/{project}/tasks?version={version}"
    code, log, outputs, summary = workspace.run(
        "pull_request", pull_event("opened", 21, first), preview_url=console
    )
    assert code == 0, log
    url = f"https://flyte.example.com/v2/domain/development/project/flytesnacks/tasks?version=pr-21-{first}"
    assert outputs["preview-url"] == url
    assert api.repos[REPO].deployments[0].statuses[-1].environment_url == url
    assert f"**Preview** [{url}]({url})" in api.repos[REPO].comments[0].body
    assert outputs["trigger"] == "preview" and outputs["deployed"] == "true"
    assert outputs["version"] == f"pr-21-{first}"
    assert {e["name"]: e["status"] for e in json.loads(outputs["environments"])} == {
        "prep": "registered",
        "analysis": "registered",
    }
    assert outputs["bundle-uri"].startswith("file://") and outputs["bundle-uri"].endswith(".tar.gz")
    assert "## ✅ Flyte deploy · preview of #21 deployed" in summary
    [comment] = api.repos[REPO].comments
    assert comment.body.startswith(comment_marker("flytesnacks")) and f"`pr-21-{first}`" in comment.body

    second = repo.commit(
        "shout louder", files={"hello_lib/text.py": "def shout(name):\n    return name.upper() + '!'\n"}
    )
    api.add_pull(REPO, 21, head_sha=second)
    code, log, outputs, _ = workspace.run("pull_request", pull_event("synchronize", 21, second))
    assert code == 0, log
    [updated] = api.repos[REPO].comments
    assert updated.id == comment.id
    assert f"`pr-21-{second}`" in updated.body and f"`pr-21-{first}`" not in updated.body
    deployments = api.repos[REPO].deployments
    assert [(d.sha, d.environment) for d in deployments] == [
        (first, "preview/pr-21"),
        (second, "preview/pr-21"),
    ]
    assert [s.state for s in deployments[1].statuses] == ["in_progress", "success"]
    assert deployments[0].state == "inactive"  # superseded by the newer push

    scope = {"org": "", "project": "flytesnacks", "domain": "development"}
    assert {t.key.version for t in workspace.store().latest_tasks(**scope)} == {f"pr-21-{second}"}

    code, log, outputs, summary = workspace.run("pull_request", pull_event("closed", 21, second))
    assert code == 0, log
    assert outputs == {"trigger": "cleanup", "deployed": "false"}
    assert workspace.store().latest_tasks(**scope) == []
    assert [d.state for d in deployments] == ["inactive", "inactive"]
    [closed] = api.repos[REPO].comments
    assert closed.id == comment.id and "preview of #21 removed" in closed.body
    removed = summary.split(f"Removed from control plane {workspace.plane.url}: ", 1)[1].split("\n", 1)[0]
    assert removed.startswith("6 task(s) in 2 version(s): ")  # 3 tasks × 2 pushes
    assert f"`pr-21-{first}`" in removed and f"`pr-21-{second}`" in removed


def test_github_failing_never_fails_a_good_deploy(workspace: Workspace) -> None:
    api, repo = workspace.api, workspace.repo
    api.add_pull(REPO, 22, head_sha=repo.head_sha)
    api.fail("POST", ".", 502, times=1000)
    api.fail("PATCH", ".", 502, times=1000)
    code, log, outputs, summary = workspace.run("pull_request", pull_event("opened", 22, repo.head_sha))
    assert code == 0, log
    assert outputs["deployed"] == "true"
    assert "::warning::GitHub: could not create a GitHub deployment for preview/pr-22: HTTP 502" in log
    assert "::warning::GitHub: could not update the comment on pull request #22: HTTP 502" in log
    assert "### Warnings" in summary
    assert api.repos[REPO].comments == []


def test_a_fork_pull_request_builds_only_and_never_calls_github(workspace: Workspace) -> None:
    api, repo = workspace.api, workspace.repo
    code, log, outputs, summary = workspace.run(
        "pull_request",
        pull_event("opened", 23, repo.head_sha, head_repo="mallory/app"),
        api_key="flyte-api-key-secret",
    )
    assert code == 0, log
    assert outputs["trigger"] == "build-only" and outputs["deployed"] == "false"
    assert "comes from the fork `mallory/app`" in summary and "nothing is pushed or deployed" in summary
    assert api.calls == []
    assert not (repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()
    assert "::add-mask::flyte-api-key-secret" in log


def test_the_cli_cleans_up_a_preview_and_tells_github(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from deployer.cli import app

    api, repo = workspace.api, workspace.repo
    api.add_pull(REPO, 24, head_sha=repo.head_sha)
    code, log, _, _ = workspace.run("pull_request", pull_event("opened", 24, repo.head_sha))
    assert code == 0, log
    # Another PR's preview in the same domain must survive this cleanup.
    api.add_pull(REPO, 25, head_sha=repo.head_sha)
    code, log, _, _ = workspace.run("pull_request", pull_event("opened", 25, repo.head_sha))
    assert code == 0, log

    for key, value in {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": api.url}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        app,
        [
            "preview",
            "cleanup",
            "--pr",
            "24",
            "--root-dir",
            str(repo.path),
            "--endpoint",
            workspace.plane.url,
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    cleaned = json.loads(result.stdout)
    assert cleaned["removed_versions"] == [f"pr-24-{repo.head_sha}"] and cleaned["removed_tasks"] == 3
    assert len(cleaned["deactivated_deployments"]) == 1
    versions = {
        t.key.version
        for t in workspace.store().latest_tasks(org="", project="flytesnacks", domain="development")
    }
    assert versions == {f"pr-25-{repo.head_sha}"}
    states = {d.environment: d.state for d in api.repos[REPO].deployments}
    assert states == {"preview/pr-24": "inactive", "preview/pr-25": "success"}
    by_pr = {c.issue_number: c.body for c in api.repos[REPO].comments}
    assert "preview of #24 removed" in by_pr[24] and "preview of #25 deployed" in by_pr[25]


def test_a_closed_pull_request_is_cleaned_up_even_when_its_code_no_longer_plans(workspace: Workspace) -> None:
    api, repo = workspace.api, workspace.repo
    api.add_pull(REPO, 26, head_sha=repo.head_sha)
    code, log, _, _ = workspace.run("pull_request", pull_event("opened", 26, repo.head_sha))
    assert code == 0, log
    gone = repo.commit("drop the workflows", files={"workflows.py": None})
    code, log, outputs, _ = workspace.run("pull_request", pull_event("closed", 26, gone))
    assert code == 0, log
    assert outputs == {"trigger": "cleanup", "deployed": "false"}
    assert "::warning::input `path` 'workflows.py' does not plan" in log
    assert workspace.store().latest_tasks(org="", project="flytesnacks", domain="development") == []
    assert "preview of #26 removed" in api.repos[REPO].comments[0].body


# ---------------------------------------------------------------------------------------- triggers and apps


APP_URL = "https://{name}--{project}--{domain}.apps.example.com"


@pytest.fixture
def scheduled(make_git_repo: Any, tmp_path: Path, api: GitHubAPIServer) -> Iterator[Workspace]:
    """The scheduled sample (two apps, `reports` depending on one, triggers) checked out for the action,
    deploying to our plane that reports each app's URL (as a backend with an ingress domain does)."""
    from tests.projects import PROJECTS_DIR

    source = PROJECTS_DIR / "scheduled"
    files = {str(p.relative_to(source)): p.read_text() for p in source.rglob("*.py")}
    repo = make_git_repo("scheduled", files=files | {".gitignore": ".flyte-deploy/\n"})
    with ControlPlaneServer(TaskStore(tmp_path / "scheduled-plane"), app_url=APP_URL) as plane:
        yield Workspace(repo, tmp_path, api, plane)


def _plane(workspace: Workspace) -> EmbeddedControlPlane:
    """The served plane's state, read in-process."""
    return EmbeddedControlPlane(workspace.plane.store.state_dir)


def _environments(outputs: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in json.loads(outputs["environments"])}


def test_a_preview_never_fires_a_schedule_and_its_apps_stay_apart_until_cleanup(scheduled: Workspace) -> None:
    api, repo = scheduled.api, scheduled.repo
    sha = repo.head_sha
    api.add_pull(REPO, 31, head_sha=sha)
    code, log, outputs, summary = scheduled.run("pull_request", pull_event("opened", 31, sha))
    assert code == 0, log

    deployed = _environments(outputs)
    assert [(e["name"], e["kind"], e["status"]) for e in deployed.values()] == [
        ("archive", "task", "registered"),
        ("report-api", "app", "registered"),
        ("report-docs", "app", "registered"),
        ("reports", "task", "registered"),
    ]
    # Every trigger registered inactive, whatever its code says; the apps under the preview's names.
    assert [(t["name"], t["active"]) for t in deployed["reports"]["triggers"]] == [
        ("on-demand", False),
        ("nightly", False),
        ("hourly-refresh", False),
    ]
    url = "https://report-api-pr-31--flytesnacks--development.apps.example.com"
    assert deployed["report-api"]["app"] == {"name": "report-api-pr-31", "url": url, "revision": 1}
    with _plane(scheduled) as plane:
        assert not any(t.active for t in plane.list_triggers("flytesnacks", "development", ""))
        assert sorted(a.metadata.id.name for a in plane.list_apps("flytesnacks", "development", "")) == [
            "report-api-pr-31",
            "report-docs-pr-31",
        ]

    # The comment and the summary list each trigger (schedule, inactive) and link each app's URL.
    [comment] = api.repos[REPO].comments
    assert (
        "| `reports.build_report` | `nightly` | `cron 0 2 * * * (America/New_York)` | ⏸️ inactive |"
        in comment.body
    )
    assert f"| `report-api-pr-31` | [{url}]({url}) | 1 | registered |" in comment.body
    assert "### Triggers" in summary and "### Apps" in summary
    assert "| `reports.build_report` | `hourly-refresh` | `every 60 minutes` | ⏸️ inactive |" in summary

    # A second PR in the same domain gets its own apps; closing the first removes only its own.
    api.add_pull(REPO, 32, head_sha=sha)
    code, log, _, _ = scheduled.run("pull_request", pull_event("opened", 32, sha))
    assert code == 0, log
    code, log, outputs, summary = scheduled.run("pull_request", pull_event("closed", 31, sha))
    assert code == 0, log
    assert "Apps removed: `report-api-pr-31`, `report-docs-pr-31`" in summary
    with _plane(scheduled) as plane:
        assert sorted(a.metadata.id.name for a in plane.list_apps("flytesnacks", "development", "")) == [
            "report-api-pr-32",
            "report-docs-pr-32",
        ]
        # The triggers are one per task name, and PR 32 deployed them last: they are its, and stay.
        versions = {
            plane.get_trigger(
                "flytesnacks", "development", "", t.id.name.task_name, t.id.name.name
            ).spec.task_version  # type: ignore[union-attr]
            for t in plane.list_triggers("flytesnacks", "development", "")
        }
    assert versions == {f"pr-32-{sha}"}
    code, log, outputs, summary = scheduled.run("pull_request", pull_event("closed", 32, sha))
    assert code == 0, log
    assert (
        "Triggers removed: `reports.adhoc/on-demand`, `reports.build_report/hourly-refresh`, "
        "`reports.build_report/nightly`"
    ) in summary
    with _plane(scheduled) as plane:
        assert plane.list_triggers("flytesnacks", "development", "") == []
        assert plane.list_apps("flytesnacks", "development", "") == []


def push_event(ref: str, sha: str) -> dict[str, Any]:
    return {"ref": ref, "after": sha, "repository": {"full_name": REPO, "default_branch": "main"}}


def test_the_default_branch_follows_the_triggers_input_and_a_release_the_code(scheduled: Workspace) -> None:
    repo = scheduled.repo
    sha = repo.head_sha
    main = push_event("refs/heads/main", sha)
    code, log, outputs, _ = scheduled.run("push", main, triggers="inactive")
    assert code == 0, log
    reports = _environments(outputs)["reports"]
    assert not any(t["active"] for t in reports["triggers"])
    assert _environments(outputs)["report-api"]["app"]["name"] == "report-api"  # no preview suffix

    repo.tag("v1.0.0", sha)
    code, log, outputs, summary = scheduled.run(
        "push", push_event("refs/tags/v1.0.0", sha), triggers="inactive"
    )
    assert code == 0, log
    assert outputs["trigger"] == "release"
    assert [(t["name"], t["active"]) for t in _environments(outputs)["reports"]["triggers"]] == [
        ("on-demand", True),
        ("nightly", True),
        ("hourly-refresh", False),
    ]
    assert (
        "| `reports.build_report` | `nightly` | `cron 0 2 * * * (America/New_York)` | ✅ active |" in summary
    )


def test_the_action_deploys_tasks_triggers_and_apps_in_container_mode(
    scheduled: Workspace, registry_url: str, unique_repo: str
) -> None:
    sha = scheduled.repo.head_sha
    code, log, outputs, summary = scheduled.run(
        "push",
        push_event("refs/heads/main", sha),
        mode="container",
        registry=f"{registry_url}/{unique_repo}",
        base_image_mirror=f"ghcr.io/flyteorg/flyte={registry_url}/flyteorg/flyte",
    )
    assert code == 0, log
    deployed = _environments(outputs)
    assert {n: e["status"] for n, e in deployed.items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "registered"
    )
    built = json.loads(outputs["images"])
    assert (
        built["report-docs"].startswith(f"{registry_url}/{unique_repo}/")
        and "@sha256:" in built["report-docs"]
    )
    # The command app runs the code baked into its image; the @server app ships in the bundle.
    assert deployed["report-docs"]["bundle_uri"] is None
    assert deployed["report-api"]["bundle_uri"] == outputs["bundle-uri"] != ""
    assert [t["name"] for t in deployed["reports"]["triggers"]] == ["on-demand", "nightly", "hourly-refresh"]
    assert "### Apps" in summary and "### Triggers" in summary

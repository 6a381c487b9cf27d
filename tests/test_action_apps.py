"""Triggers and apps through the action image, run as the GitHub runner runs it (`tests/test_action_e2e.py`),
in bundle and in container mode: the scheduled sample (two apps, `reports` depending on one, triggers of
every kind) previewed on a PR with every trigger inactive and the apps under the preview's names, cleaned up
when the PR closes, and deployed by a push to the default branch with the triggers as the code says.

What was stored is read back by the real flyte SDK from the control plane on the host, which outlives
each run as a real one would and reports each app's URL (as a backend with an ingress domain does).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskStore
from deployer.report.render import comment_marker
from tests.fixtures.controlplane import TEST_PROJECTS
from tests.fixtures.flyte_peer import sdk_json
from tests.githubapi import GitHubAPIServer
from tests.test_action_e2e import REPO, TOKEN, ActionResult, Runner, pull_event, push_event

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

APP_URL = "https://{name}--{project}--{domain}.apps.example.com"
TRIGGERS = ("reports.adhoc/on-demand", "reports.build_report/hourly-refresh", "reports.build_report/nightly")
SCHEDULES = {
    "nightly": "`reports.build_report` | `nightly` | `cron 0 2 * * * (America/New_York)`",
    "hourly-refresh": "`reports.build_report` | `hourly-refresh` | `every 60 minutes`",
    "on-demand": "`reports.adhoc` | `on-demand` | `on demand`",
}
INACTIVE, ACTIVE = "⏸️ inactive", "✅ active"

READER = textwrap.dedent(
    """
    import faulthandler, json, sys
    import flyte, flyte.remote

    faulthandler.enable()  # a crash of the SDK process names its stack

    port, project, domain = sys.argv[1:4]
    flyte.init(endpoint=f"dns:///127.0.0.1:{port}", insecure=True, project=project, domain=domain)
    triggers = {}
    for t in flyte.remote.Trigger.listall():
        d = flyte.remote.Trigger.get(name=t.name, task_name=t.task_name)
        triggers[f"{t.task_name}/{t.name}"] = {"active": d.is_active, "version": d.pb2.spec.task_version}
    apps = {}
    for a in flyte.remote.App.listall():
        app = flyte.remote.App.get(name=a.name)
        command = list(app.pb2.spec.container.command)
        apps[app.name] = {
            "image": app.pb2.spec.container.image,
            "tgz": command[command.index("--tgz") + 1] if "--tgz" in command else None,
        }
    print(json.dumps({"triggers": triggers, "apps": apps}))
    """
)


@pytest.fixture(params=["bundle", "container"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scheduled(
    docker_client: Any,
    action_image: str,
    project_repo: Any,
    tmp_path: Path,
    github_api: GitHubAPIServer,
    registry_url: str,
    flyte_base_image: str,
    unique_repo: str,
) -> Iterator[Runner]:
    """The action over the scheduled sample, its state dir ignored as a user's checkout would."""
    github_api.add_token(TOKEN)
    github_api.add_repo(REPO)
    repo = project_repo("scheduled")
    repo.commit("ignore the deployer's state", files={".gitignore": ".flyte-deploy/\n"})
    store = TaskStore(tmp_path / "controlplane")
    with ControlPlaneServer(store, "127.0.0.1", 0, projects=TEST_PROJECTS, app_url=APP_URL) as plane:
        yield Runner(
            docker_client,
            action_image,
            repo,
            tmp_path,
            github_api,
            f"{registry_url}/{unique_repo}",
            flyte_base_image,
            plane,
        )


def read_back(runner: Runner, domain: str) -> dict[str, Any]:
    """Triggers and apps of `flytesnacks/DOMAIN` as the real flyte SDK lists and reads them."""
    home = runner.root / f"sdk-home-{runner.runs}"
    return sdk_json(READER, str(runner.plane.port), "flytesnacks", domain, home=home)  # type: ignore[no-any-return]


def environments(result: ActionResult) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in json.loads(result.outputs["environments"])}


def url(app: str, domain: str) -> str:
    return APP_URL.format(name=app, project="flytesnacks", domain=domain)


def assert_sent_as_the_mode_says(result: ActionResult, mode: str) -> None:
    """Container mode bakes the code into the images (but the @server app still loads it from the bundle,
    through fserve); bundle mode ships it to every environment."""
    deployed = environments(result)
    bundle = result.outputs["bundle-uri"]
    assert bundle and deployed["report-api"]["bundle_uri"] == bundle
    if mode == "container":
        images = json.loads(result.outputs["images"])
        assert {"archive", "report-docs", "reports"} <= set(images), images
        assert all("@sha256:" in images[name] for name in ("report-docs", "reports"))
        assert deployed["report-docs"]["bundle_uri"] is None and deployed["reports"]["bundle_uri"] is None
    else:
        assert {e["bundle_uri"] for e in deployed.values()} == {bundle}


def test_a_preview_registers_every_trigger_inactive_and_its_apps_apart_until_the_pr_closes(
    scheduled: Runner, mode: str
) -> None:
    api, repo = scheduled.api, scheduled.repo
    sha = repo.head_sha
    api.add_pull(REPO, 41, head_sha=sha)

    opened = scheduled.run(
        "pull_request", pull_event("opened", 41, sha), ref="refs/pull/41/merge", sha="f" * 40, mode=mode
    )
    assert opened.exit_code == 0, opened.log
    assert opened.errors == []
    assert (opened.outputs["trigger"], opened.outputs["deployed"]) == ("preview", "true")
    version = opened.outputs["version"]
    assert version == f"pr-41-{sha}"
    deployed = environments(opened)
    assert {n: (e["kind"], e["status"]) for n, e in deployed.items()} == {
        "archive": ("task", "registered"),
        "report-api": ("app", "registered"),
        "report-docs": ("app", "registered"),
        "reports": ("task", "registered"),
    }
    assert [(t["name"], t["active"]) for t in deployed["reports"]["triggers"]] == [
        ("on-demand", False),
        ("nightly", False),
        ("hourly-refresh", False),
    ]
    assert {name: deployed[name]["app"] for name in ("report-api", "report-docs")} == {
        "report-api": {
            "name": "report-api-pr-41",
            "url": url("report-api-pr-41", "development"),
            "revision": 1,
        },
        "report-docs": {
            "name": "report-docs-pr-41",
            "url": url("report-docs-pr-41", "development"),
            "revision": 1,
        },
    }
    assert_sent_as_the_mode_says(opened, mode)

    # What the plane holds, as the flyte SDK reads it: every trigger inactive, on the preview's version.
    seen = read_back(scheduled, "development")
    assert seen["triggers"] == {key: {"active": False, "version": version} for key in TRIGGERS}
    assert sorted(seen["apps"]) == ["report-api-pr-41", "report-docs-pr-41"]
    assert seen["apps"]["report-api-pr-41"]["tgz"] == opened.outputs["bundle-uri"]
    if mode == "container":
        assert seen["apps"]["report-docs-pr-41"]["tgz"] is None
        assert (
            seen["apps"]["report-docs-pr-41"]["image"] == json.loads(opened.outputs["images"])["report-docs"]
        )

    # The step summary and the sticky comment list each trigger, all three inactive, and link each app.
    [comment] = api.repos[REPO].comments
    assert comment.body.startswith(comment_marker("flytesnacks"))
    for text in (opened.summary, comment.body):
        for row in SCHEDULES.values():
            assert f"| {row} | {INACTIVE} |" in text, text
        assert (text.count(INACTIVE), text.count(ACTIVE)) == (3, 0)
        for app in ("report-api-pr-41", "report-docs-pr-41"):
            link = url(app, "development")
            assert f"| `{app}` | [{link}]({link}) | 1 | registered |" in text, text
    assert "### Triggers" in opened.summary and "<summary>Triggers</summary>" in comment.body

    closed = scheduled.run(
        "pull_request", pull_event("closed", 41, sha), ref="refs/pull/41/merge", sha="f" * 40, mode=mode
    )
    assert closed.exit_code == 0, closed.log
    assert closed.outputs == {"trigger": "cleanup", "deployed": "false"}
    removed = (
        "Triggers removed: `reports.adhoc/on-demand`, `reports.build_report/hourly-refresh`, "
        "`reports.build_report/nightly`",
        "Apps removed: `report-api-pr-41`, `report-docs-pr-41`",
    )
    [final] = api.repos[REPO].comments
    assert final.id == comment.id and "preview of #41 removed" in final.body
    for line in removed:
        assert line in closed.summary, closed.summary
        assert line in final.body, final.body
    assert read_back(scheduled, "development") == {"triggers": {}, "apps": {}}
    assert scheduled.store().latest_tasks(org="", project="flytesnacks", domain="development") == []


def test_a_push_to_the_default_branch_deploys_the_apps_and_the_triggers_as_the_code_says(
    scheduled: Runner, mode: str
) -> None:
    sha = scheduled.repo.head_sha
    main = scheduled.run(
        "push", push_event("refs/heads/main", sha), ref="refs/heads/main", sha=sha, mode=mode
    )
    assert main.exit_code == 0, main.log
    assert main.errors == []
    assert (main.outputs["trigger"], main.outputs["deployed"], main.outputs["version"]) == (
        "branch",
        "true",
        sha,
    )
    deployed = environments(main)
    assert {n: e["status"] for n, e in deployed.items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "registered"
    )
    # auto_activate as written: the fixed-rate trigger stays paused, the others fire.
    assert [(t["name"], t["active"]) for t in deployed["reports"]["triggers"]] == [
        ("on-demand", True),
        ("nightly", True),
        ("hourly-refresh", False),
    ]
    assert {name: deployed[name]["app"]["name"] for name in ("report-api", "report-docs")} == {
        "report-api": "report-api",
        "report-docs": "report-docs",
    }
    assert_sent_as_the_mode_says(main, mode)

    seen = read_back(scheduled, "staging")
    assert seen["triggers"] == {
        "reports.adhoc/on-demand": {"active": True, "version": sha},
        "reports.build_report/hourly-refresh": {"active": False, "version": sha},
        "reports.build_report/nightly": {"active": True, "version": sha},
    }
    assert sorted(seen["apps"]) == ["report-api", "report-docs"]

    assert f"| {SCHEDULES['nightly']} | {ACTIVE} |" in main.summary
    assert f"| {SCHEDULES['on-demand']} | {ACTIVE} |" in main.summary
    assert f"| {SCHEDULES['hourly-refresh']} | {INACTIVE} |" in main.summary
    assert (main.summary.count(ACTIVE), main.summary.count(INACTIVE)) == (2, 1)
    link = url("report-api", "staging")
    assert f"| `report-api` | [{link}]({link}) | 1 | registered |" in main.summary
    assert scheduled.api.calls == []  # a branch deploy leaves PRs alone

    # The same commit again: nothing changes, the apps keep their revision.
    again = scheduled.run(
        "push", push_event("refs/heads/main", sha), ref="refs/heads/main", sha=sha, mode=mode
    )
    assert again.exit_code == 0, again.log
    assert {n: e["status"] for n, e in environments(again).items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "unchanged"
    )
    # The plane held this exact deploy: the apps are reported as it holds them, URL and revision.
    assert environments(again)["report-api"]["app"] == {
        "name": "report-api",
        "url": link,
        "revision": 1,
    }
    assert f"| `report-api` | [{link}]({link}) | 1 | unchanged |" in again.summary

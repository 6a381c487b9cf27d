"""Apps: discovered and planned in one graph with tasks, serialized with the SDK's own translation, created or
updated in place through AppService (the same commit again changes nothing), read back by the real flyte SDK
and CLI, and started for real from what we deployed: from the code bundle through `fserve`, and from the
code baked into the image in container mode."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from flyteidl2.app import app_payload_pb2

from deployer.apps import VERSION_LABEL
from deployer.controlplane import app_store
from deployer.controlplane.app_service import AppService
from deployer.controlplane.app_store import AppKey
from deployer.controlplane.embedded import EmbeddedControlPlane
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskStore
from tests.fixtures.controlplane import StartServe
from tests.fixtures.flyte_peer import flyte_cli, sdk_json
from tests.fixtures.pipeline import CliResult

ALL = ("workflows.py", "--all")
BUNDLE = (*ALL, "--mode", "bundle")
SCOPE = ("flytesnacks", "development", "")


def envs(result: CliResult) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in result.json["deployment"]["environments"]}


def stored_app(repo: Any, name: str, domain: str = "development") -> Any:
    with EmbeddedControlPlane(repo.path / ".flyte-deploy") as plane:
        return plane.get_app("flytesnacks", domain, "", name)


def history(repo: Any, name: str) -> list[tuple[int, str]]:
    with EmbeddedControlPlane(repo.path / ".flyte-deploy") as plane, plane.store.reading() as db:
        return [
            (r.revision, r.reason) for r in app_store.history(db, AppKey("flytesnacks", "development", name))
        ]


# ---------------------------------------------------------------------------------------------- the plan


def test_apps_and_tasks_share_one_graph_in_the_plan(project_repo, flyte_deploy) -> None:
    repo = project_repo("scheduled")
    plan = flyte_deploy("plan", *BUNDLE, "--json", cwd=repo.path)
    assert plan.code == 0, plan.stderr
    planned = {e["name"]: e for e in plan.json["environments"]}
    assert [e["name"] for e in plan.json["environments"]] == [
        "archive",
        "report-api",
        "report-docs",
        "reports",
    ]
    assert (planned["report-api"]["kind"], planned["report-api"]["tasks"]) == ("app", [])
    assert planned["report-api"]["app"] == {"name": "report-api", "port": 8080, "type": None}
    assert planned["reports"]["depends_on"] == ["report-docs"] and planned["reports"]["kind"] == "task"
    assert plan.json["warnings"] == []  # nothing skipped: apps deploy

    # One app selected by its variable brings nothing else; a task env brings the app it depends on.
    one = flyte_deploy("plan", "workflows.py", "reports", "--mode", "bundle", "--json", cwd=repo.path)
    assert [e["name"] for e in one.json["environments"]] == ["report-docs", "reports"]
    api = flyte_deploy(
        "plan", "workflows.py", "api", "--mode", "bundle", "--app-suffix", "-pr-7", "--json", cwd=repo.path
    )
    assert [(e["name"], e["app"]["name"]) for e in api.json["environments"]] == [
        ("report-api", "report-api-pr-7")
    ]

    # In container mode, an app served by its @server function still ships in the bundle (fserve loads it
    # from there); an app running a command is built with the code like the tasks.
    modes = flyte_deploy("plan", *ALL, "--mode", "container", "--json", cwd=repo.path)
    assert modes.code == 0, modes.stderr
    chosen = {e["name"]: (e["mode"], e["mode_reason"]) for e in modes.json["environments"]}
    assert chosen["report-api"] == ("bundle", "its @server function is loaded by fserve from the code bundle")
    assert chosen["report-docs"][0] == chosen["reports"][0] == "container"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--mode", "bundle", "--app-suffix", "-preview-of-pr-12345"),
            "error: app 'report-docs' (deployed as 'report-docs-preview-of-pr-12345'): the name is 31 "
            "characters and Flyte app names have at most 30; shorten the AppEnvironment's name or "
            "--app-suffix",
        ),
        (
            ("--copy-style", "none", "--version", "v1"),
            "error: app 'report-api': its @server function is loaded by fserve from the code bundle, and "
            "--copy-style none ships none, so it could not start: ship a bundle, or give the app `args`",
        ),
    ],
)
def test_an_app_the_control_plane_could_not_run_is_refused_before_anything(
    project_repo, flyte_deploy, args: tuple[str, ...], error: str
) -> None:
    repo = project_repo("scheduled")
    result = flyte_deploy("deploy", *ALL, *args, cwd=repo.path)
    assert result.code != 0 and result.error_line == error, result.stderr
    assert not (repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()


def test_a_dry_run_shows_every_app_and_trigger_it_would_send_and_sends_nothing(
    project_repo, flyte_deploy
) -> None:
    repo = project_repo("scheduled")
    dry = flyte_deploy("deploy", *BUNDLE, "--dry-run", "--triggers", "inactive", "--json", cwd=repo.path)
    assert dry.code == 0, dry.stderr
    apps = dry.json["app_specs"]
    assert sorted(apps) == ["report-api", "report-docs"]
    assert apps["report-api"]["metadata"]["id"]["name"] == "report-api"
    assert apps["report-docs"]["spec"]["container"]["args"] == ["python", "-m", "http.server", "8081"]
    triggers = dry.json["task_triggers"]
    assert {task: [t["name"] for t in ts] for task, ts in triggers.items()} == {
        "reports.build_report": ["nightly", "hourly-refresh"],
        "reports.adhoc": ["on-demand"],
    }
    assert not any(t["spec"].get("active", False) for ts in triggers.values() for t in ts)
    assert {e["status"] for e in dry.json["deployment"]["environments"]} == {"skipped"}
    assert not (repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()


# ---------------------------------------------------------------------------------------------- deploys


def test_an_app_is_created_then_left_alone_then_updated_by_a_new_commit(project_repo, flyte_deploy) -> None:
    repo = project_repo("scheduled")
    first = flyte_deploy("deploy", *BUNDLE, "--json", cwd=repo.path)
    assert first.code == 0, first.stderr
    version = first.json["plan"]["version"]
    deployed = envs(first)
    assert {n: e["status"] for n, e in deployed.items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "registered"
    )
    assert deployed["report-api"]["app"] == {"name": "report-api", "revision": 1, "url": None, "reason": None}

    app = stored_app(repo, "report-api")
    bundle = first.json["artifacts"]["bundle"]["uri"]
    command = list(app.spec.container.command)
    assert command[:3] == ["fserve", "--version", version]
    assert command[command.index("--tgz") + 1] == bundle
    assert command[command.index("--resolver-args") + 1] == "workflows:api"
    docs = stored_app(repo, "report-docs")
    docs_command = list(docs.spec.container.command)
    assert docs_command[docs_command.index("--resolver-args") + 1] == "workflows:docs"
    assert list(docs.spec.container.args) == ["python", "-m", "http.server", "8081"]
    assert [p.container_port for p in docs.spec.container.ports] == [8081]
    assert (
        app.spec.security_context.allow_anonymous
        and app.spec.profile.short_description == "Serves the latest report"
    )
    assert app.metadata.labels[VERSION_LABEL] == version and app.metadata.code_bundle_uri == bundle
    assert {e.key: e.value for e in app.spec.container.env} == {
        "REPORTS_DIR": "/tmp/reports",
        "_F_SYS_PATH": "./.",
    }

    # The same commit: nothing changes, no revision.
    again = flyte_deploy("deploy", *BUNDLE, "--json", cwd=repo.path)
    assert again.code == 0, again.stderr
    assert {n: e["status"] for n, e in envs(again).items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "unchanged"
    )
    assert history(repo, "report-api") == [(1, "created")]
    # Held as it was: the app reported as the plane holds it.
    held = {"name": "report-api", "revision": 1, "url": None, "reason": None}
    assert envs(again)["report-api"]["app"] == held

    # A new commit: the app is updated in place, and the update names the version and the commit.
    repo.commit(
        "louder headlines", files={"report_lib/render.py": "def headline(r, w):\n    return r.upper()\n"}
    )
    third = flyte_deploy("deploy", *BUNDLE, "--json", cwd=repo.path)
    assert third.code == 0, third.stderr
    new_version = third.json["plan"]["version"]
    reason = f"flyte-deploy: version {new_version} (commit {repo.head_sha[:12]})"
    assert envs(third)["report-api"]["status"] == "updated"
    assert envs(third)["report-api"]["app"] == {
        "name": "report-api",
        "revision": 2,
        "url": None,
        "reason": reason,
    }
    assert history(repo, "report-api") == [(2, reason), (1, "created")]
    assert stored_app(repo, "report-api").metadata.labels[VERSION_LABEL] == new_version


APP_READER = """
import json, sys
import flyte, flyte.remote

port, project, domain, name = sys.argv[1:5]
flyte.init(endpoint=f"dns:///127.0.0.1:{port}", insecure=True, project=project, domain=domain)
app = flyte.remote.App.get(name=name)
print(json.dumps({
    "name": app.name,
    "revision": app.revision,
    "endpoint": app.endpoint,
    "image": app.pb2.spec.container.image,
    "command": list(app.pb2.spec.container.command),
    "listed": sorted(a.name for a in flyte.remote.App.listall()),
    "deactivated": app.is_deactivated(),
}))
"""


def test_the_flyte_sdk_and_cli_read_back_the_apps_we_deployed(
    project_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    repo = project_repo("scheduled")
    served = start_serve(tmp_path / "state")
    result = flyte_deploy("deploy", *BUNDLE, "--endpoint", served.url, "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    seen = sdk_json(APP_READER, str(served.port), *SCOPE[:2], "report-api", home=tmp_path / "home")
    assert (seen["name"], seen["revision"], seen["endpoint"]) == ("report-api", 1, "")
    assert seen["image"] == envs(result)["report-api"]["image"]
    assert seen["command"][seen["command"].index("--tgz") + 1] == result.json["artifacts"]["bundle"]["uri"]
    assert seen["listed"] == ["report-api", "report-docs"]
    assert seen["deactivated"]  # the embedded plane records apps and runs none: no cluster is assigned

    where = ("--project", SCOPE[0], "--domain", SCOPE[1])
    listed = flyte_cli(
        repo.path, "--endpoint", served.endpoint, "--insecure", "get", "app", *where, home=tmp_path / "home"
    )
    assert listed.returncode == 0, listed.stderr
    assert any(
        "report-api" in line and "UNASSIGNED" in line and "ACTIVE" in line
        for line in listed.stdout.splitlines()
    )


# ---------------------------------------------------------------------------------------------- refusals


def test_an_app_the_control_plane_refuses_is_one_error_line_and_a_rerun_completes(
    project_repo, flyte_deploy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    repo = project_repo("scheduled")
    state = tmp_path / "plane"

    def refuse(self: AppService, request: app_payload_pb2.CreateRequest, ctx: Any) -> Any:
        raise ConnectError(Code.PERMISSION_DENIED, "apps are not enabled for project flytesnacks")

    # Our server with an AppService that refuses, as a backend without apps for the project does.
    monkeypatch.setattr(AppService, "create", refuse)
    with ControlPlaneServer(TaskStore(state)) as plane:
        refused = flyte_deploy("deploy", *BUNDLE, "--endpoint", plane.url, "--json", cwd=repo.path)
    assert refused.code != 0
    assert refused.error_line == (
        f"error: registering report-api failed: control plane {plane.url} refused to create app report-api: "
        "PERMISSION_DENIED: apps are not enabled for project flytesnacks (check the control plane "
        "credential: --api-key, or the Flyte config); registered: archive; not registered: report-api, "
        "report-docs, reports. Run the same deploy again to complete it"
    ), refused.stderr
    assert "Traceback" not in refused.stderr
    with EmbeddedControlPlane(state) as stored:
        assert stored.list_apps(*SCOPE) == [] and stored.list_triggers(*SCOPE) == []
        assert [t.task_id.name for t in stored.list_tasks(*SCOPE)] == ["archive.compress"]

    monkeypatch.undo()
    with ControlPlaneServer(TaskStore(state)) as plane:
        rerun = flyte_deploy("deploy", *BUNDLE, "--endpoint", plane.url, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert {n: e["status"] for n, e in envs(rerun).items()} == {
        "archive": "unchanged",
        "report-api": "registered",
        "report-docs": "registered",
        "reports": "registered",
    }


# ---------------------------------------------------------------------------------------------- running


def _serve(
    docker: Any, container: Any, *, args: tuple[str, ...] = (), volumes: tuple[str, ...] = (), path: str
) -> str:
    """Start the app's container as a cluster would (its image, command, args and env), on the engine's
    bridge network, and return the body it serves at `path` (`:PORT/...`)."""
    env = {e.key: e.value for e in container.env}
    running = docker.containers.run(
        container.image, [*container.command, *args], environment=env, volumes=list(volumes), detach=True
    )
    try:
        running.reload()
        ip = running.attrs["NetworkSettings"]["IPAddress"]
        deadline = time.monotonic() + 90
        while True:
            try:
                return httpx.get(f"http://{ip}{path}", timeout=2).raise_for_status().text
            except httpx.HTTPError:
                running.reload()
                if running.status != "running" or time.monotonic() > deadline:
                    pytest.fail(
                        f"the app never answered on {path}: {running.logs().decode(errors='replace')}"
                    )
                time.sleep(0.5)  # polling for the server to come up, not a timing assertion
    finally:
        running.remove(force=True)


def test_deployed_apps_start_from_the_bundle_and_from_the_image(
    project_repo, flyte_deploy, stack_deploy_args, docker_client
) -> None:
    repo = project_repo("scheduled")
    result = flyte_deploy("deploy", *ALL, "--mode", "container", *stack_deploy_args, "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    deployed = envs(result)
    assert {n: e["status"] for n, e in deployed.items()} == dict.fromkeys(
        ("archive", "report-api", "report-docs", "reports"), "registered"
    )
    built = {i["env_name"]: f"{i['repository']}@{i['digest']}" for i in result.json["artifacts"]["images"]}
    assert set(built) == {"archive", "report-docs", "reports"}

    # report-docs: its command serves the code baked into its image (no bundle).
    docs = stored_app(repo, "report-docs").spec.container
    assert docs.image == built["report-docs"] and "--tgz" not in docs.command
    served = _serve(docker_client, docs, args=tuple(docs.args), path=":8081/workflows.py")
    assert served == (repo.path / "workflows.py").read_text()

    # report-api: fserve downloads the bundle and serves the app's @server function.
    api = stored_app(repo, "report-api").spec.container
    bundle = result.json["artifacts"]["bundle"]["uri"].removeprefix("file://")
    assert api.command[list(api.command).index("--tgz") + 1] == f"file://{bundle}"
    listing = _serve(docker_client, api, volumes=(f"{bundle}:{bundle}:ro",), path=":8080/")
    assert "workflows.py" in listing and "report_lib/" in listing  # the extracted bundle's files

    # The task that depends on the app runs in the built image with its triggers registered.
    with EmbeddedControlPlane(repo.path / ".flyte-deploy") as plane:
        nightly = plane.get_trigger("flytesnacks", "development", "", "reports.build_report", "nightly")
    assert nightly is not None and nightly.spec.task_version == result.json["plan"]["version"]
    assert (
        json.loads(json.dumps(deployed["reports"]["triggers"]))[1]["schedule"]
        == "cron 0 2 * * * (America/New_York)"
    )

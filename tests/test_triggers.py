"""Triggers: planned and checked like the control plane checks them, sent with their task in one DeployTask,
stored with revisions by the embedded plane, read back by the real flyte SDK and CLI, paused by the
`inactive` policy, and removed from the control plane when the code drops them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from flyteidl2.task import common_pb2
from flyteidl2.trigger.trigger_definition_pb2 import TriggerRevisionAction

from deployer.controlplane.cron import cron_problem
from deployer.controlplane.remote import RemoteControlPlane
from deployer.controlplane.serialize import task_specs
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskKey
from deployer.controlplane.trigger_serde import task_triggers
from deployer.controlplane.trigger_store import TriggerKey, revisions
from deployer.errors import ControlPlaneError
from deployer.models import TriggerPolicy
from tests.fixtures.controlplane import MakeProject, StartServe
from tests.fixtures.flyte_peer import flyte_cli, sdk_json
from tests.fixtures.pipeline import CliResult

IMAGE = "127.0.0.1:5000/acme/reports@sha256:" + "d" * 64
ALL = ("workflows.py", "--all", "--mode", "bundle")
DEPLOY = "flytesnacks", "development"
_Action = TriggerRevisionAction


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        ("0 2 * * *", "America/New_York"),
        ("*/15 9-17 * * mon-fri", "UTC"),
        ("0 0 1,15 jan,jul *", ""),
        ("5 4 ? * SUN", "Europe/London"),
        ("@daily", ""),
        ("@every 1h30m", ""),
    ],
)
def test_schedules_the_backend_parses_are_accepted(expression: str, timezone: str) -> None:
    assert cron_problem(expression, timezone) is None


@pytest.mark.parametrize(
    ("expression", "timezone", "problem"),
    [
        (
            "0 2 * *",
            "",
            "expected 5 fields (minute hour day-of-month month day-of-week), found 4 in '0 2 * *'",
        ),
        ("61 * * * *", "", "minute field '61': '61' is outside 0-59"),
        ("0 0 * * 7", "", "day of week field '7': '7' is outside 0-6"),
        ("0 12-6 * * *", "", "hour field '12-6': '12-6' starts after it ends"),
        ("*/0 * * * *", "", "minute field '*/0': step '0' must be a positive number"),
        ("0 0 * smarch *", "", "month field 'smarch': 'smarch' is not a number or a name"),
        ("@fortnightly", "", "unknown descriptor '@fortnightly'"),
        ("0 2 * * *", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ],
)
def test_schedules_the_backend_refuses_are_named(expression: str, timezone: str, problem: str) -> None:
    assert cron_problem(expression, timezone) == problem


# ---------------------------------------------------------------------------------------------- the plan


def test_the_plan_lists_every_trigger_with_its_schedule_inputs_and_activation(
    project_repo, flyte_deploy
) -> None:
    repo = project_repo("scheduled")
    plan = flyte_deploy("plan", *ALL, "--json", cwd=repo.path)
    assert plan.code == 0, plan.stderr
    reports = next(e for e in plan.json["environments"] if e["name"] == "reports")
    assert reports["depends_on"] == ["report-docs"]
    triggers = {t["name"]: t for t in reports["triggers"]}
    assert triggers["nightly"] == {
        "task": "reports.build_report",
        "name": "nightly",
        "schedule": "cron 0 2 * * * (America/New_York)",
        "timezone": "America/New_York",
        "inputs": ["when=<trigger time>", "region='eu'"],
        "auto_activate": True,
        "active": True,
    }
    assert (triggers["hourly-refresh"]["schedule"], triggers["hourly-refresh"]["active"]) == (
        "every 60 minutes",
        False,
    )
    assert (triggers["on-demand"]["schedule"], triggers["on-demand"]["task"]) == (
        "on demand",
        "reports.adhoc",
    )
    assert plan.json["trigger_policy"] == "as-code"

    paused = flyte_deploy("plan", *ALL, "--json", "--triggers", "inactive", cwd=repo.path)
    assert paused.code == 0, paused.stderr
    planned = [t for e in paused.json["environments"] for t in e["triggers"]]
    assert len(planned) == 3 and not any(t["active"] for t in planned)
    assert {t["name"] for t in planned if t["auto_activate"]} == {"nightly", "on-demand"}

    table = flyte_deploy("plan", *ALL, "--triggers", "INACTIVE", cwd=repo.path)
    assert table.code == 0, table.stderr
    assert "triggers · policy inactive" in table.stdout
    assert "cron 0 2 * * * (America/New_York)" in table.stdout


def _broken(repo: Any, old: str, new: str) -> None:
    source = (repo.path / "workflows.py").read_text()
    assert old in source
    repo.commit("break a trigger", files={"workflows.py": source.replace(old, new)})


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            'flyte.Cron("0 2 * * *", timezone="America/New_York")',
            'flyte.Cron("0 25 * * *", timezone="America/New_York")',
            "error: trigger 'nightly' of task reports.build_report: hour field '25': '25' is outside 0-23 "
            "(the control plane would refuse it)",
        ),
        (
            'inputs={"region": "apac"}',
            'inputs={"country": "nz"}',
            "error: cannot serialize trigger 'on-demand' of task reports.adhoc: Trigger default input "
            "'country' must be an input to the task, but not found in task reports.adhoc.",
        ),
    ],
)
def test_a_trigger_the_control_plane_would_refuse_stops_the_deploy_before_anything(
    project_repo, flyte_deploy, old: str, new: str, error: str
) -> None:
    repo = project_repo("scheduled")
    _broken(repo, old, new)
    result = flyte_deploy("deploy", *ALL, cwd=repo.path)
    assert result.code != 0
    assert result.error_line.startswith(error), result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo.path / ".flyte-deploy" / "controlplane.sqlite3").exists()
    assert not (repo.path / ".flyte-deploy" / "bundles").exists()


# ---------------------------------------------------------------------------------------------- the plane


TRIGGERED = """
    from datetime import datetime

    import flyte

    env = flyte.TaskEnvironment(name="tr")
    tokyo = flyte.Cron("30 6 * * *", timezone="Asia/Tokyo")
    daily = flyte.Trigger("daily", tokyo, inputs={"at": flyte.TriggerTime})
    manual = flyte.Trigger("manual", inputs={"n": 3})


    @env.task(triggers=[daily, manual])
    async def count(at: datetime, n: int = 1) -> int:
        return n


    @env.task
    async def plain(x: int) -> int:
        return x
"""


def _sent(
    project: Any, version: str, policy: TriggerPolicy = TriggerPolicy.as_code
) -> list[tuple[Any, list[Any]]]:
    specs = task_specs(
        project.module.env,
        version=version,
        project="acme",
        domain="prod",
        org="",
        root_dir=project.root,
        image_uri=IMAGE,
        bundle_uri=None,
        bundle_digest=None,
    )
    tasks = list(project.module.env.tasks.values())
    return [(spec, task_triggers(task, spec, policy=policy)) for task, spec in zip(tasks, specs, strict=True)]


def _history(server: ControlPlaneServer, name: str) -> list[tuple[int, int, bool, str]]:
    with server.store.reading() as db:
        return [
            (t.revision, t.action, t.active, t.task_version)
            for t in revisions(db, TriggerKey("acme", "prod", "tr.count", name))
        ]


def test_the_plane_stores_triggers_with_their_task_and_keeps_every_revision(
    controlplane: ControlPlaneServer, flyte_project: MakeProject
) -> None:
    project = flyte_project({"app.py": TRIGGERED})
    client = RemoteControlPlane(controlplane.url)
    for spec, triggers in _sent(project, "v1"):
        assert client.deploy_task(spec, triggers) == "registered"
    daily = client.get_trigger("acme", "prod", "", "tr.count", "daily")
    assert daily is not None and daily.spec.task_version == "v1" and daily.spec.active
    schedule = daily.automation_spec.schedule
    assert (schedule.cron.expression, schedule.cron.timezone, schedule.kickoff_time_input_arg) == (
        "30 6 * * *",
        "Asia/Tokyo",
        "at",
    )
    manual = client.get_trigger("acme", "prod", "", "tr.count", "manual")
    assert (
        manual is not None and manual.automation_spec.type == common_pb2.TriggerAutomationSpecType.TYPE_NONE
    )
    assert [(lit.name, lit.value.scalar.primitive.integer) for lit in manual.spec.inputs.literals] == [
        ("n", 3)
    ]

    # The same deploy again changes nothing: no new revision.
    for spec, triggers in _sent(project, "v1"):
        assert client.deploy_task(spec, triggers) == "unchanged"
    assert _history(controlplane, "daily") == [(1, _Action.TRIGGER_REVISION_ACTION_DEPLOY, True, "v1")]

    # A new version moves the triggers onto it; paused ones are registered inactive.
    for spec, triggers in _sent(project, "v2", TriggerPolicy.inactive):
        client.deploy_task(spec, triggers)
    assert _history(controlplane, "daily")[0] == (2, _Action.TRIGGER_REVISION_ACTION_DEPLOY, False, "v2")

    # Activate, then deactivate, as `flyte.remote.Trigger.update` does: each a revision; repeating is a no-op.
    name = client.get_trigger("acme", "prod", "", "tr.count", "daily")
    assert name is not None
    client.set_triggers_active([name.id.name], True)
    client.set_triggers_active([name.id.name], True)
    client.set_triggers_active([name.id.name], False)
    assert [h[:3] for h in _history(controlplane, "daily")[:2]] == [
        (4, _Action.TRIGGER_REVISION_ACTION_DEACTIVATE, False),
        (3, _Action.TRIGGER_REVISION_ACTION_ACTIVATE, True),
    ]

    # A version sending only `daily`: `manual` is no longer attached and is deleted (kept in history).
    spec, triggers = _sent(project, "v3")[0]
    client.deploy_task(spec, [t for t in triggers if t.name == "daily"])
    assert [t.id.name.name for t in client.list_triggers("acme", "prod", "")] == ["daily"]
    assert client.get_trigger("acme", "prod", "", "tr.count", "manual") is None
    assert _history(controlplane, "manual")[0][:3] == (3, _Action.TRIGGER_REVISION_ACTION_DELETE, False)

    client.delete_triggers([name.id.name])
    assert client.list_triggers("acme", "prod", "") == []

    # The history over the wire, as the console reads it: newest first, each revision readable in full.
    from flyteidl2.common import identifier_pb2
    from flyteidl2.trigger import trigger_service_pb2 as tsv
    from flyteidl2.trigger.trigger_service_connect import TriggerServiceClientSync

    with TriggerServiceClientSync(controlplane.url) as wire:
        listed = wire.get_trigger_revision_history(tsv.GetTriggerRevisionHistoryRequest(name=name.id.name))
        assert [(r.id.revision, r.action) for r in listed.triggers] == [
            (6, _Action.TRIGGER_REVISION_ACTION_DELETE),
            (5, _Action.TRIGGER_REVISION_ACTION_DEPLOY),  # v3
            (4, _Action.TRIGGER_REVISION_ACTION_DEACTIVATE),
            (3, _Action.TRIGGER_REVISION_ACTION_ACTIVATE),
            (2, _Action.TRIGGER_REVISION_ACTION_DEPLOY),
            (1, _Action.TRIGGER_REVISION_ACTION_DEPLOY),
        ]
        first = wire.get_trigger_revision_details(
            tsv.GetTriggerRevisionDetailsRequest(
                id=identifier_pb2.TriggerIdentifier(name=name.id.name, revision=1)
            )
        ).trigger
        assert (first.spec.task_version, first.spec.active) == ("v1", True)
        assert first.automation_spec.schedule.cron.timezone == "Asia/Tokyo"


def test_a_refused_schedule_writes_neither_the_task_nor_its_triggers(
    controlplane: ControlPlaneServer, flyte_project: MakeProject
) -> None:
    project = flyte_project({"app.py": TRIGGERED})
    spec, triggers = _sent(project, "v1")[0]
    triggers[0].automation_spec.schedule.cron.expression = "0 0 31 2 * *"
    with pytest.raises(ControlPlaneError) as refused:
        RemoteControlPlane(controlplane.url).deploy_task(spec, triggers)
    assert str(refused.value) == (
        f"control plane {controlplane.url} refused to deploy task tr.count version v1: INVALID_ARGUMENT: "
        "trigger 'daily' has an invalid cron schedule: expected 5 fields (minute hour day-of-month month "
        "day-of-week), found 6 in '0 0 31 2 * *'"
    )
    assert controlplane.store.get(TaskKey("", "acme", "prod", "tr.count", "v1")) is None
    assert RemoteControlPlane(controlplane.url).list_triggers("acme", "prod", "") == []


# ---------------------------------------------------------------------------------------------- SDK peers

READER = textwrap.dedent(
    """
    import json, sys
    import flyte, flyte.remote
    from google.protobuf.json_format import MessageToDict

    port, project, domain = sys.argv[1:4]
    flyte.init(endpoint=f"dns:///127.0.0.1:{port}", insecure=True, project=project, domain=domain)
    listed = {f"{t.task_name}/{t.name}": t.is_active for t in flyte.remote.Trigger.listall()}
    details = {}
    for key in sorted(listed):
        task, name = key.split("/")
        d = flyte.remote.Trigger.get(name=name, task_name=task)
        details[key] = {
            "automation": MessageToDict(d.automation_spec),
            "inputs": MessageToDict(d.pb2.spec.inputs),
            "version": d.pb2.spec.task_version,
            "active": d.is_active,
            "description": d.pb2.spec.description,
        }
    if len(sys.argv) > 4:
        flyte.remote.Trigger.update(name="nightly", task_name="reports.build_report", active=False)
    print(json.dumps({"listed": listed, "details": details}))
    """
)


def _deploy(flyte_deploy: Any, repo: Any, served: Any, *args: str) -> CliResult:
    result = flyte_deploy(
        "deploy",
        *ALL,
        "--endpoint",
        served.url,
        "--json",
        *args,
        cwd=repo.path,
        env={"FLYTE_DEPLOY_PROGRESS": "0"},
    )
    assert result.code == 0, result.stderr
    return result


def test_the_flyte_sdk_and_cli_read_back_every_trigger_we_deployed(
    project_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    repo = project_repo("scheduled")
    served = start_serve(tmp_path / "state")
    result = _deploy(flyte_deploy, repo, served)
    version = result.json["plan"]["version"]
    reports = next(e for e in result.json["deployment"]["environments"] if e["name"] == "reports")
    assert [(t["name"], t["active"], t["revision"]) for t in reports["triggers"]] == [
        ("on-demand", True, 1),
        ("nightly", True, 1),
        ("hourly-refresh", False, 1),
    ]

    seen = sdk_json(READER, str(served.port), *DEPLOY, "deactivate", home=tmp_path / "home")
    assert seen["listed"] == {
        "reports.adhoc/on-demand": True,
        "reports.build_report/hourly-refresh": False,
        "reports.build_report/nightly": True,
    }
    nightly = seen["details"]["reports.build_report/nightly"]
    assert nightly["automation"] == {
        "type": "TYPE_SCHEDULE",
        "schedule": {
            "cron": {"expression": "0 2 * * *", "timezone": "America/New_York"},
            "kickoffTimeInputArg": "when",
        },
    }
    assert nightly["inputs"]["literals"] == [
        {"name": "region", "value": {"scalar": {"primitive": {"stringValue": "eu"}}}}
    ]
    assert {"key": "_u_kickoff_time_input_arg", "value": "when"} in nightly["inputs"]["context"]
    assert (nightly["version"], nightly["description"]) == (version, "Nightly report for Europe")
    hourly = seen["details"]["reports.build_report/hourly-refresh"]["automation"]["schedule"]["rate"]
    assert hourly == {"value": 60, "unit": "FIXED_RATE_UNIT_MINUTE"}
    on_demand = seen["details"]["reports.adhoc/on-demand"]["inputs"]
    assert on_demand == {
        "literals": [{"name": "region", "value": {"scalar": {"primitive": {"stringValue": "apac"}}}}],
        "context": [{"key": "team", "value": "data"}],
    }

    # The SDK's deactivation is a revision on our side, and `flyte get trigger` shows the state.
    listed = flyte_cli(
        repo.path,
        "--endpoint",
        served.endpoint,
        "--insecure",
        "get",
        "trigger",
        "--project",
        DEPLOY[0],
        "--domain",
        DEPLOY[1],
        "reports.build_report",
        home=tmp_path / "home",
    )
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "reports.build_report" in line]
    assert len(rows) == 2
    assert any("nightly" in r and "cron: 0 2 * * * (America/New_York)" in r and "False" in r for r in rows)

    # The same commit again is a no-op: no trigger gets a new revision, the SDK's pause stands, and the
    # report shows the triggers as the plane holds them.
    again = _deploy(flyte_deploy, repo, served)
    reports = next(e for e in again.json["deployment"]["environments"] if e["name"] == "reports")
    assert reports["status"] == "unchanged"
    assert [(t["name"], t["active"], t["revision"]) for t in reports["triggers"]] == [
        ("on-demand", True, 1),
        ("nightly", False, 2),
        ("hourly-refresh", False, 1),
    ]


def test_a_paused_deploy_registers_every_trigger_inactive_and_the_sdk_sees_it(
    project_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    repo = project_repo("scheduled")
    served = start_serve(tmp_path / "state")
    _deploy(flyte_deploy, repo, served, "--triggers", "inactive", "--domain", "preview")
    seen = sdk_json(READER, str(served.port), DEPLOY[0], "preview", home=tmp_path / "home")
    assert seen["listed"] == dict.fromkeys(
        ("reports.adhoc/on-demand", "reports.build_report/hourly-refresh", "reports.build_report/nightly"),
        False,
    )


def test_a_trigger_removed_from_the_code_is_removed_from_the_control_plane(
    project_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    repo = project_repo("scheduled")
    served = start_serve(tmp_path / "state")
    _deploy(flyte_deploy, repo, served)
    # `adhoc` keeps no trigger at all: a backend does not prune that case by itself.
    _broken(repo, "@reports.task(triggers=[on_demand])", "@reports.task")
    result = _deploy(flyte_deploy, repo, served)
    reports = next(e for e in result.json["deployment"]["environments"] if e["name"] == "reports")
    assert reports["removed_triggers"] == ["reports.adhoc/on-demand"]
    assert "removed triggers no longer in the code: reports.adhoc/on-demand" in result.stderr
    seen = sdk_json(READER, str(served.port), *DEPLOY, home=tmp_path / "home")
    assert set(seen["listed"]) == {"reports.build_report/hourly-refresh", "reports.build_report/nightly"}
    assert {d["version"] for d in seen["details"].values()} == {result.json["plan"]["version"]}


# ---------------------------------------------------------------------------------------------- offloading


class _ZeroTrustCluster:
    """SelectCluster as a zero-trust backend answers OPERATION_UPLOAD_TRIGGER: served here."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def select_cluster(self, request: Any, ctx: Any) -> Any:
        from flyteidl2.cluster import payload_pb2

        self.asked.append(request.operation)
        return payload_pb2.SelectClusterResponse(cluster_endpoint="")


class _ContentAddressedUploads:
    """UploadInputs as the open-source data proxy answers it: the inputs stored under their hash."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}

    def upload_inputs(self, request: Any, ctx: Any) -> Any:
        import hashlib

        from flyteidl2.common import run_pb2
        from flyteidl2.dataproxy import dataproxy_service_pb2 as dp

        assert request.task_spec.task_template.id.name  # the task travels by spec: it is not registered yet
        digest = hashlib.sha256(request.inputs.SerializeToString(deterministic=True)).hexdigest()
        self.stored[digest] = request.inputs
        uri = f"s3://bucket/offloaded-inputs/{digest}"
        return dp.UploadInputsResponse(
            offloaded_input_data=run_pb2.OffloadedInputData(uri=uri, inputs_hash=digest)
        )


def test_trigger_inputs_are_offloaded_where_the_plane_takes_them_as_flyte_does(
    tmp_path: Path, flyte_project: MakeProject
) -> None:
    """The data proxy of `flyte-deploy serve` does not take trigger inputs (UNIMPLEMENTED: they stay inline,
    as the SDK peers above show); a zero-trust plane does, and then the trigger carries only their URI."""
    import dataclasses
    from types import SimpleNamespace

    from flyteidl2.cluster import payload_pb2

    from deployer.controlplane.embedded import EmbeddedControlPlane
    from deployer.registration import register_tasks

    project = flyte_project({"app.py": TRIGGERED})
    plane = EmbeddedControlPlane(tmp_path / "state")
    plane.create_project("acme", "")
    clusters, uploads = _ZeroTrustCluster(), _ContentAddressedUploads()
    # Our handlers, with the cluster and data proxy services of a zero-trust plane in place of ours (the
    # embedded plane looks them up by name).
    ours = {f.name: getattr(plane.handlers, f.name) for f in dataclasses.fields(plane.handlers)}
    ours.update(clusters=clusters, dataproxy=uploads)
    plane.handlers = SimpleNamespace(**ours)  # type: ignore[assignment]

    sent = _sent(project, "v1")
    outcomes = register_tasks(plane, [s for s, _ in sent], {s.task_template.id.name: t for s, t in sent})
    assert outcomes == ["registered", "registered"]
    assert clusters.asked == [payload_pb2.SelectClusterRequest.Operation.OPERATION_UPLOAD_TRIGGER] * 2
    for name in ("daily", "manual"):
        details = plane.get_trigger("acme", "prod", "", "tr.count", name)
        assert details is not None and details.spec.WhichOneof("input_wrapper") == "offloaded_input_data"
        offloaded = details.spec.offloaded_input_data
        assert offloaded.uri == f"s3://bucket/offloaded-inputs/{offloaded.inputs_hash}"
        assert offloaded.inputs_hash in uploads.stored
    # Each trigger's bound inputs were uploaded: `manual`'s n=3, and `daily`'s default n=1.
    values = sorted(lit.value.scalar.primitive.integer for i in uploads.stored.values() for lit in i.literals)
    assert values == [1, 3]

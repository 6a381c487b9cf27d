"""Registering what is not a bare task: the triggers that go with each task, and apps.

The pipeline calls these per environment, in deploy order:
- `serialize_triggers` / `serialize_apps`: the SDK's serialization of every trigger (the policy applied)
  and every app, during validation (placeholder images) and again with the real images;
- `register_tasks`: each task with its triggers in one DeployTask (the plane writes both in one
  transaction), trigger inputs offloaded first as `flyte deploy` does;
- `register_app`: create or update in place; the same spec again is a no-op;
- `settle_triggers`, once all environments are registered: triggers of the deployed tasks that the code
  no longer has are deleted (a backend only prunes when a task still sends some), and the report reads
  each trigger's state back from the plane.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from connectrpc.errors import ConnectError
from flyteidl2.app.app_definition_pb2 import App
from flyteidl2.app.app_payload_pb2 import CreateRequest
from flyteidl2.common import identifier_pb2
from flyteidl2.task.task_definition_pb2 import TaskSpec, TaskTrigger
from flyteidl2.trigger.trigger_definition_pb2 import Trigger
from google.protobuf.message import Message

from deployer.apps import update_reason
from deployer.controlplane.base import DeployOutcome, Unsupported
from deployer.errors import ControlPlaneError, PlanError
from deployer.models import AppDeployment, EnvStatus, Plan, PlannedEnv, PlannedTrigger, TriggerDeployment
from deployer.progress import Progress

if TYPE_CHECKING:
    from deployer.controlplane.base import ControlPlane
    from deployer.plan import PlanResult

TriggersByTask = dict[str, list[TaskTrigger]]


def serialize_triggers(planned: PlanResult, specs: Mapping[str, Sequence[TaskSpec]]) -> TriggersByTask:
    """{task name: its `TaskTrigger`s} for every task of every task environment (empty lists included)."""
    from deployer.controlplane.trigger_serde import task_triggers

    plan = planned.plan
    found: TriggersByTask = {}
    for env in plan.environments:
        if env.kind != "task":
            continue
        tasks = list(planned.graph.env(env.name).env.tasks.values())
        for task, spec in zip(tasks, specs[env.name], strict=True):
            triggers = task_triggers(task, spec, policy=plan.trigger_policy)
            for trigger in triggers:
                check(trigger, f"trigger {trigger.name[:80]!r} of task {task.name}", file=_source(task))
            found[spec.task_template.id.name] = triggers
    return found


def serialize_apps(
    planned: PlanResult, uris: Mapping[str, str], bundle_uri: str | None, *, org: str
) -> dict[str, App]:
    """{environment name: `App`} for every app environment."""
    from deployer.controlplane.app_serde import app_spec

    plan = planned.plan
    digest = plan.bundle.digest if plan.bundle else None
    apps: dict[str, App] = {}
    for env in plan.environments:
        if env.kind != "app" or env.app is None:
            continue
        in_bundle = env.mode == "bundle"
        apps[env.name] = app_spec(
            planned.graph.env(env.name).env,
            name=env.app.name,
            version=plan.version,
            project=plan.project,
            domain=plan.domain,
            org=org,
            root_dir=Path(planned.graph.root_dir),
            image_uri=uris[env.name],
            bundle_uri=bundle_uri if in_bundle else None,
            bundle_digest=digest if in_bundle else None,
            image_lookup=uris,
            sys_paths=planned.graph.sys_paths or None,
        )
        check(
            CreateRequest(app=apps[env.name]), f"app {env.app.name}", file=str(env.source_file or "") or None
        )
    return apps


def check(message: Message, what: str, *, file: str | None = None) -> None:
    """Refuse, before anything is registered, what the control plane's request validation would refuse."""
    from deployer.controlplane.validation import validate

    try:
        validate(message)
    except ConnectError as exc:
        raise PlanError(f"{what}: {exc.message} (the control plane would refuse it)", file=file) from None


def register_tasks(
    plane: ControlPlane,
    specs: Sequence[TaskSpec],
    triggers: TriggersByTask,
    *,
    unchanged: set[str] | frozenset[str] = frozenset(),
) -> list[DeployOutcome]:
    """Each task with its triggers (inputs offloaded where the plane takes them); the outcome per task.
    Tasks in `unchanged` (held identical under this version) are not sent again: an existing version
    writes nothing, its triggers included."""
    outcomes: list[DeployOutcome] = []
    for spec in specs:
        name = spec.task_template.id.name
        if name in unchanged:
            outcomes.append("unchanged")
            continue
        sent = [plane.offload_trigger_inputs(t, spec) for t in triggers.get(name, ())]
        outcomes.append(plane.deploy_task(spec, sent))
    return outcomes


def register_app(plane: ControlPlane, app: App, plan: Plan) -> tuple[EnvStatus, AppDeployment]:
    reason = update_reason(plan.version, plan.git.sha)
    outcome, stored = plane.deploy_app(app, reason=reason)
    deployed = as_deployed(stored, name=app.metadata.id.name, reason=reason if outcome == "updated" else None)
    return outcome, deployed


def as_deployed(stored: App, *, name: str, reason: str | None = None) -> AppDeployment:
    """An app as the control plane holds it: its revision and, when the plane reports one, its URL."""
    return AppDeployment(
        name=stored.metadata.id.name or name,
        revision=stored.metadata.revision or None,
        url=stored.status.ingress.public_url or None,
        reason=reason,
    )


def settle_triggers(
    plane: ControlPlane, plan: Plan, org: str, sent: TriggersByTask, progress: Progress
) -> tuple[dict[str, list[TriggerDeployment]], list[str]]:
    """Delete the deployed tasks' triggers that are no longer in the code, and read back the state of
    the ones that are: ({task name: its triggers}, ["task/trigger" removed])."""
    planned = {(t.task, t.name): t for env in plan.environments for t in env.triggers}
    fallback = {
        task: [_as_sent(planned.get((task, t.name)), task, t) for t in triggers]
        for task, triggers in sent.items()
    }
    if not sent:
        return fallback, []
    try:
        live = plane.list_triggers(plan.project, plan.domain, org)
    except Unsupported as exc:
        if any(sent.values()):
            progress.warning(f"{exc}: the triggers are reported as sent")
        return fallback, []
    except ControlPlaneError as exc:
        # The registrations stand; removing detached triggers waits for the next deploy.
        progress.warning(f"could not read the triggers back: {exc}; they are reported as sent")
        return fallback, []
    detached = [t for t in live if t.id.name.task_name in sent and t.id.name.name not in _names(sent, t)]
    removed: list[str] = []
    if detached:
        names = [
            identifier_pb2.TriggerName(
                org=org,
                project=t.id.name.project,
                domain=t.id.name.domain,
                task_name=t.id.name.task_name,
                name=t.id.name.name,
            )
            for t in detached
        ]
        try:
            plane.delete_triggers(names)
        except ControlPlaneError as exc:
            progress.warning(f"could not remove triggers no longer in the code: {exc}")
        else:
            removed = [f"{n.task_name}/{n.name}" for n in names]
            progress.info(f"removed triggers no longer in the code: {', '.join(removed)}")
    state = _by_key(live)
    return {task: as_held(triggers, state) for task, triggers in fallback.items()}, removed


TriggerState = Mapping[tuple[str, str], Trigger]
"""The plane's triggers by (task name, trigger name)."""


def trigger_state(plane: ControlPlane, plan: Plan, org: str, progress: Progress) -> TriggerState:
    """The triggers the plane holds in the deploy's project and domain; none (with a warning) when it
    cannot say, and then the triggers are reported as planned."""
    try:
        return _by_key(plane.list_triggers(plan.project, plan.domain, org))
    except ControlPlaneError as exc:  # Unsupported included: the deploy stands
        progress.warning(f"could not read the triggers back: {exc}; they are reported as planned")
        return {}


def as_held(triggers: Iterable[TriggerDeployment], state: TriggerState) -> list[TriggerDeployment]:
    """`triggers` with each one's state and revision where the plane holds it."""
    held: list[TriggerDeployment] = []
    for trigger in triggers:
        found = state.get((trigger.task, trigger.name))
        if found is not None:
            revision = found.id.revision or None
            trigger = trigger.model_copy(update={"active": found.active, "revision": revision})
        held.append(trigger)
    return held


def _by_key(live: Sequence[Trigger]) -> TriggerState:
    return {(t.id.name.task_name, t.id.name.name): t for t in live}


def env_triggers(
    env: PlannedEnv, settled: Mapping[str, list[TriggerDeployment]]
) -> tuple[TriggerDeployment, ...]:
    tasks = {t.task for t in env.triggers}
    return tuple(t for task in sorted(tasks) for t in settled.get(task, ()))


def _names(sent: TriggersByTask, trigger: Trigger) -> set[str]:
    return {t.name for t in sent.get(trigger.id.name.task_name, ())}


def _source(task: object) -> str | None:
    file = getattr(task, "source_file", None)
    return str(file) if file else None


def _as_sent(planned: PlannedTrigger | None, task: str, trigger: TaskTrigger) -> TriggerDeployment:
    schedule = planned.schedule if planned is not None else "—"
    return TriggerDeployment(task=task, name=trigger.name, schedule=schedule, active=trigger.spec.active)

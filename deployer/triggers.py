"""The triggers of a deploy: what the plan says about each one, and which may fire (the trigger policy).

A `flyte.Trigger` is a named launch configuration of one task: default inputs, run settings and maybe an
automation (a `Cron` schedule with its time zone, a `FixedRate`, or `OnArtifact`). The control plane keeps
one trigger per (project, domain, task name, trigger name), pointed at the version last deployed, so a
trigger registered by a PR preview would fire in the preview's domain like a production one: the policy
decides whether registered triggers are active.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import flyte

from deployer.controlplane.cron import cron_problem
from deployer.errors import PlanError
from deployer.models import PlannedTrigger, TriggerPolicy


def planned_triggers(env: Any, policy: TriggerPolicy) -> tuple[PlannedTrigger, ...]:
    """Every trigger of every task of a task environment, checked as the control plane will check them."""
    found: list[PlannedTrigger] = []
    for task in env.tasks.values():
        names: set[str] = set()
        for trigger in getattr(task, "triggers", None) or ():
            if trigger.name in names:
                raise PlanError(
                    f"task {task.name}: two triggers are named {trigger.name!r}; a task's trigger names "
                    "must differ",
                    file=_source(task),
                )
            names.add(trigger.name)
            problem = schedule_problem(trigger)
            if problem:
                raise PlanError(
                    f"trigger {trigger.name!r} of task {task.name}: {problem} (the control plane would "
                    "refuse it)",
                    file=_source(task),
                )
            found.append(
                PlannedTrigger(
                    task=task.name,
                    name=trigger.name,
                    schedule=describe(trigger.automation),
                    timezone=getattr(trigger.automation, "timezone", None),
                    inputs=tuple(_inputs(trigger.inputs or {})),
                    auto_activate=trigger.auto_activate,
                    active=is_active(trigger.auto_activate, policy),
                )
            )
    return tuple(found)


def is_active(auto_activate: bool, policy: TriggerPolicy) -> bool:
    """Whether a trigger is registered active: never under `inactive`, else as its code says."""
    return auto_activate and policy is TriggerPolicy.as_code


def schedule_problem(trigger: flyte.Trigger) -> str | None:
    automation = trigger.automation
    if isinstance(automation, flyte.Cron):
        return cron_problem(automation.expression, automation.timezone)
    if isinstance(automation, flyte.FixedRate) and automation.interval_minutes <= 0:
        return f"FixedRate({automation.interval_minutes}) must be at least one minute"
    return None


def describe(automation: object) -> str:
    """How a trigger fires, in a few words."""
    if automation is None:
        return "on demand"
    if isinstance(automation, flyte.Cron):
        return f"cron {automation.expression} ({automation.timezone})"
    if isinstance(automation, flyte.FixedRate):
        every = _minutes(automation.interval_minutes)
        start = f" from {automation.start_time.isoformat()}" if automation.start_time else ""
        return f"every {every}{start}"
    if isinstance(automation, flyte.OnArtifact):
        version = f"@{automation.version}" if automation.version else ""
        return f"on new artifact {automation.name}{version}"
    return type(automation).__name__


def _minutes(n: int) -> str:
    return "minute" if n == 1 else f"{n} minutes"


def _inputs(inputs: dict[str, Any]) -> Iterable[str]:
    for name, value in inputs.items():
        if value is flyte.TriggerTime:
            yield f"{name}=<trigger time>"
        elif value is flyte.TriggeredArtifact:
            yield f"{name}=<triggering artifact>"
        elif isinstance(value, flyte.TriggeredPartition):
            yield f"{name}=<partition {value.key}>"
        elif isinstance(value, datetime):
            yield f"{name}={value.isoformat()}"
        else:
            yield f"{name}={value!r}"


def _source(task: Any) -> str | None:
    file = getattr(task, "source_file", None)
    return str(file) if file else None

"""Tasks' `flyte.Trigger`s → flyteidl2 `TaskTrigger`s, through the SDK's own serializer, as `flyte deploy`
does (flyte/_deploy.py, `_deploy_task`): `trigger_serde.to_task_trigger(t, task_name, task_inputs,
task_default_inputs)` against the task's serialized interface and default inputs, then the trigger policy
(`active`). The inputs are offloaded at registration (`ControlPlane.offload_trigger_inputs`), where a
control plane is known, exactly when flyte offloads them: when the trigger binds input values.
"""

from __future__ import annotations

from typing import Any

from flyteidl2.task.task_definition_pb2 import TaskSpec, TaskTrigger

from deployer import sdk
from deployer.controlplane.sync import one_line, run_coroutine
from deployer.errors import DeployError, PlanError
from deployer.models import TriggerPolicy
from deployer.triggers import is_active


def task_triggers(task: Any, spec: TaskSpec, *, policy: TriggerPolicy) -> list[TaskTrigger]:
    """The `TaskTrigger`s `flyte deploy` sends with `spec`, in the order the task declares them, each
    active as the policy allows."""
    triggers: list[TaskTrigger] = []
    inputs = spec.task_template.interface.inputs
    defaults = list(spec.default_inputs)
    for trigger in getattr(task, "triggers", None) or ():
        try:
            serialized = run_coroutine(
                sdk.to_task_trigger(
                    trigger, task_name=task.name, task_inputs=inputs, task_default_inputs=defaults
                )
            )
        except DeployError:
            raise
        except Exception as exc:
            raise PlanError(
                f"cannot serialize trigger {trigger.name!r} of task {task.name}: {one_line(exc)}",
                file=str(task.source_file) if getattr(task, "source_file", None) else None,
            ) from exc
        serialized.spec.active = is_active(trigger.auto_activate, policy)
        triggers.append(serialized)
    return triggers

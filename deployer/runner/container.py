"""What Flyte's backend starts for a task: its container, or its pod template's primary container.

A task with a `flyte.PodTemplate` has no `container` in its spec: the SDK writes a Kubernetes pod spec
(`task_template.k8s_pod.pod_spec`) whose container named by `task_template.config["primary_container_name"]`
carries the task's image (unless the pod spec names its own), its `a0` args, and the task's env followed
by the pod spec's own. Locally only that container runs; sidecars and init containers are not started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import RunError

# The SDK's key in `task_template.config` (flyte/_pod.py `_PRIMARY_CONTAINER_NAME_FIELD`) and its default.
PRIMARY_CONTAINER_KEY = "primary_container_name"
DEFAULT_PRIMARY = "primary"


@dataclass(frozen=True)
class TaskContainer:
    """The one container to start for a task."""

    image: str
    args: tuple[str, ...]
    """The container's command followed by its args, as the container starts (`a0 ...`)."""
    env: dict[str, str]
    working_dir: str | None = None
    pod_container: str | None = None
    """The primary container's name, for a pod-template task."""
    not_started: tuple[str, ...] = ()
    """The pod's other containers (sidecars, init containers), which a local run does not start."""
    unset_env: tuple[str, ...] = field(default=())
    """Env the pod spec takes from elsewhere (`valueFrom`, `envFrom`), which a local run cannot fill."""

    @property
    def starts_runtime(self) -> bool:
        return bool(self.args) and self.args[0] == "a0"


def task_container(spec: TaskSpec) -> TaskContainer:
    """The container `spec` starts; a `RunError` for a task that starts none (SQL and the like)."""
    template = spec.task_template
    name = template.id.name or spec.short_name
    target = template.WhichOneof("target")
    if target == "container":
        container = template.container
        return TaskContainer(
            image=container.image,
            args=(*container.command, *container.args),
            env={kv.key: kv.value for kv in container.env},
        )
    if target == "k8s_pod":
        return _primary_container(name, template.config, template.k8s_pod)
    raise RunError(f"task {name} starts no container ({target or 'no target'}), so it cannot be run locally")


def _primary_container(task: str, config: Any, pod: Any) -> TaskContainer:
    from google.protobuf.json_format import MessageToDict

    primary = config.get(PRIMARY_CONTAINER_KEY) or pod.primary_container_name or DEFAULT_PRIMARY
    pod_spec: dict[str, Any] = MessageToDict(pod.pod_spec)
    containers = [c for c in pod_spec.get("containers") or [] if isinstance(c, dict)]
    chosen = next((c for c in containers if c.get("name") == primary), None)
    if chosen is None:
        names = ", ".join(str(c.get("name")) for c in containers) or "none"
        raise RunError(
            f"task {task}'s pod template has no container named {primary} (its primary container; "
            f"containers: {names})"
        )
    image = chosen.get("image")
    if not image:
        raise RunError(f"task {task}'s pod template gives its primary container {primary} no image")
    env: dict[str, str] = {}
    unset: list[str] = []
    for item in chosen.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[str(item["name"])] = str(item.get("value", ""))  # Kubernetes: the last of a name wins
        else:
            env.pop(str(item["name"]), None)
            unset.append(str(item["name"]))
    unset += [f"envFrom {_source(ref)}" for ref in chosen.get("envFrom") or []]
    others = [str(c.get("name")) for c in containers if c is not chosen]
    others += [f"{c.get('name')} (init)" for c in pod_spec.get("initContainers") or [] if isinstance(c, dict)]
    return TaskContainer(
        image=str(image),
        args=(*map(str, chosen.get("command") or []), *map(str, chosen.get("args") or [])),
        env=env,
        working_dir=chosen.get("workingDir") or None,
        pod_container=str(primary),
        not_started=tuple(others),
        unset_env=tuple(unset),
    )


def _source(ref: dict[str, Any]) -> str:
    for kind in ("configMapRef", "secretRef"):
        if kind in ref:
            return f"{kind} {ref[kind].get('name', '')}".strip()
    return "(unknown source)"

"""Read a deployed task's spec back from the control plane (ours, embedded, or a real one)."""

from __future__ import annotations

from pathlib import Path

from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import RunError
from deployer.redact import printable_url


def fetch_spec(
    task: str,
    *,
    version: str | None,
    project: str,
    domain: str,
    org: str,
    endpoint: str | None,
    insecure: bool,
    api_key: str | None,
    state_dir: Path,
) -> tuple[TaskSpec, str]:
    """The deployed `TaskSpec` of `task` (ENV.TASK) and its version: `version`, else the newest one."""
    from deployer.controlplane.base import ControlPlane

    where = f"{project}/{domain}" + (f" (org {org})" if org else "")
    where += f" at {_show(endpoint, state_dir)}"
    plane: ControlPlane
    if endpoint is not None:
        from deployer.controlplane.remote import RemoteControlPlane

        plane = RemoteControlPlane(endpoint, insecure=insecure, api_key=api_key)
    else:
        from deployer.controlplane.embedded import EmbeddedControlPlane

        plane = EmbeddedControlPlane(state_dir)
    with plane as client:
        if version is None:
            versions = client.list_versions(project, domain, org, task)
            if not versions:
                raise RunError(f"task {task} is not deployed in {where}")
            version = versions[0]
        details = client.get_task(project, domain, org, task, version)
        if details is None:
            raise RunError(f"task {task} version {version} is not deployed in {where}")
    return details.spec, version


def _show(endpoint: str | None, state_dir: Path) -> str:
    return printable_url(endpoint) if endpoint is not None else f"the embedded control plane in {state_dir}"

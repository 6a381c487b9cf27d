"""Read a deployed task's spec back from the control plane (ours, embedded, or a real one)."""

from __future__ import annotations

from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import RunError
from deployer.redact import printable_url
from deployer.settings import Settings


def fetch_spec(task: str, *, version: str | None, settings: Settings) -> tuple[TaskSpec, str]:
    """The deployed `TaskSpec` of `task` (ENV.TASK) and its version: `version`, else the newest one.

    The plane is the one a deploy with the same settings registers with: `endpoint`, else the embedded
    one in the state dir."""
    from deployer.controlplane import open_control_plane

    project, domain, org = settings.project, settings.domain, settings.org
    if settings.endpoint is None and not settings.state.is_dir():
        raise RunError(
            f"nothing is deployed in {settings.state} (no embedded control plane state): deploy first, "
            "or pass --state-dir/--endpoint"
        )
    where = f"{project}/{domain}" + (f" (org {org})" if org else "")
    if settings.endpoint is not None:
        where += f" at {printable_url(settings.endpoint)}"
    else:
        where += f" at the embedded control plane in {settings.state}"
    with open_control_plane(settings) as client:
        if version is None:
            versions = client.list_versions(project, domain, org, task)
            if not versions:
                raise RunError(f"task {task} is not deployed in {where}")
            version = versions[0]
        details = client.get_task(project, domain, org, task, version)
        if details is None:
            raise RunError(f"task {task} version {version} is not deployed in {where}")
    return details.spec, version

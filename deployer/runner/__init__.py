"""Running a deployed task locally: fetch its spec, write inputs in Flyte's format, fill the
template variables of its container args (a pod-template task: its primary container's), put its secrets
where Flyte mounts them, and start Flyte's runtime (`a0`) in the deployed image (container mode) or in a
local virtualenv with the downloaded bundle (bundle mode)."""

from deployer.runner.execute import TaskFailed, TaskRun, run_task
from deployer.runner.fetch import fetch_spec

__all__ = ["TaskFailed", "TaskRun", "fetch_spec", "run_task"]

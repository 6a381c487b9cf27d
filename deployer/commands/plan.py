"""`flyte-deploy plan`: what a deploy would do, without building, pushing or uploading anything."""

from __future__ import annotations

from deployer.commands import options as o
from deployer.request import DeployRequest


@o.uses_request(*o.PLAN, selection=True)
def command(request: DeployRequest, as_json: o.JsonOpt = False) -> None:
    """Show the version, environments (in deploy order), images, modes and bundle of a deploy."""
    from deployer import output
    from deployer.plan import plan_request

    plan = plan_request(request).plan
    progress = output.ConsoleProgress()
    for warning in plan.warnings:
        progress.warning(warning)
    output.emit_plan(plan, as_json=as_json)

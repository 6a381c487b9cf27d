"""`flyte-deploy deploy`: plan, bundle/build, and register every environment's tasks."""

from __future__ import annotations

from deployer.commands import options as o
from deployer.errors import ControlPlaneError
from deployer.request import DeployRequest


@o.uses_request(*o.DEPLOY, selection=True)
def command(request: DeployRequest, as_json: o.JsonOpt = False) -> None:
    """Deploy environments: bundle or build their code, then register their tasks (with their triggers)
    and apps in dependency order.

    With no --endpoint, an embedded control plane (state in ROOT_DIR/.flyte-deploy) is used.
    Re-deploying the same version is a no-op; a changed task under an existing version is refused. Apps
    are updated in place when their spec changed. --triggers inactive registers every trigger paused.
    """
    from deployer import output
    from deployer.pipeline import run

    outcome = run(request, progress=output.ConsoleProgress(show_bars=request.settings.progress))
    report = outcome.report
    dry_run = report.deployment is not None and report.deployment.dry_run
    output.emit_report(
        report,
        as_json=as_json,
        specs=outcome.specs_json() if dry_run else None,
        triggers=outcome.triggers_json() if dry_run else None,
        apps=outcome.apps_json() if dry_run else None,
    )
    deployment = report.deployment
    if deployment is not None and not deployment.ok and not deployment.dry_run:
        failed = next(e for e in deployment.environments if e.status == "failed")
        done = [e.name for e in deployment.environments if e.status in ("registered", "updated", "unchanged")]
        left = [e.name for e in deployment.environments if e.status in ("failed", "skipped")]
        raise ControlPlaneError(
            f"registering {failed.name} failed: {failed.error}; registered: {', '.join(done) or 'none'}; "
            f"not registered: {', '.join(left)}. Run the same deploy again to complete it"
        )

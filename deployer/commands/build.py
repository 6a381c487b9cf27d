"""`flyte-deploy build`: build and push the images of the planned environments, by digest."""

from __future__ import annotations

from deployer.commands import options as o
from deployer.request import DeployRequest


@o.uses_request(*o.BUILD, selection=True)
def command(request: DeployRequest, as_json: o.JsonOpt = False) -> None:
    """Build (once per content), push and tag the images of the planned environments."""
    from deployer import output
    from deployer.pipeline import run

    outcome = run(
        request, until="build", progress=output.ConsoleProgress(show_bars=request.settings.progress)
    )
    output.emit_images(outcome.report.artifacts.images, dry_run=request.settings.dry_run, as_json=as_json)

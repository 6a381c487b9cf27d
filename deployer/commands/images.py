"""`flyte-deploy images`: the `--image NAME=URI` map of a deploy, building what needs building."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.request import DeployRequest


class Format(enum.StrEnum):
    args = "args"
    json = "json"


FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="args: `--image name=uri` pairs for `flyte deploy`; json: {name: uri}.",
    ),
]


@o.uses_request(*o.BUILD, selection=True)
def command(request: DeployRequest, output_format: FormatOpt = Format.args) -> None:
    """Print the image of every environment (built images by digest; with --dry-run nothing is built)."""
    from deployer import output
    from deployer.pipeline import run
    from deployer.plan import image_map

    outcome = run(
        request, until="build", progress=output.ConsoleProgress(show_bars=request.settings.progress)
    )
    report = outcome.report
    output.emit_image_map(
        image_map(report.plan, report.artifacts.images), as_args=output_format is Format.args
    )

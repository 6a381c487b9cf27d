"""`flyte-deploy build`: build and push the images of the planned environments, by digest."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from deployer.commands import options as o
from deployer.models import BuiltImage, CopyStyle, Mode


def command(
    path: o.PathArg = None,
    env_var: o.VarArg = None,
    all_envs: o.AllOpt = False,
    recursive: o.RecursiveOpt = False,
    root_dir: o.RootDirOpt = None,
    copy_style: o.CopyStyleOpt = CopyStyle.loaded_modules,
    mode: o.ModeOpt = Mode.auto,
    version: o.VersionOpt = None,
    sha: o.ShaOpt = None,
    project: o.ProjectOpt = "flytesnacks",
    domain: o.DomainOpt = "development",
    org: o.OrgOpt = "",
    registry: o.RegistryOpt = None,
    image: o.ImageOpt = None,
    base_image_mirror: o.MirrorOpt = None,
    push: o.PushOpt = True,
    dry_run: o.DryRunOpt = False,
    as_json: o.JsonOpt = False,
) -> None:
    """Build (once per content), push and tag the images of the planned environments."""
    from deployer import output
    from deployer.images import build_images
    from deployer.pipeline import image_options, line_progress
    from deployer.plan import plan_request

    request = o.build_request(
        path=path,
        env_var=env_var,
        all_envs=all_envs,
        recursive=recursive,
        root_dir=root_dir,
        copy_style=copy_style,
        mode=mode,
        version=version,
        sha=sha,
        project=project,
        domain=domain,
        org=org,
        registry=registry,
        images=image,
        base_image_mirrors=base_image_mirror,
        push=push,
        dry_run=dry_run,
    )
    planned = plan_request(request)
    for warning in planned.plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    images = build_images(
        planned.plan, planned.graph, planned.git, image_options(request), line_progress(output.progress)
    )
    if as_json:
        print(json.dumps([{**i.model_dump(mode="json"), "uri": i.uri} for i in images], indent=2))
        return
    if not images:
        typer.echo("no environment needs an image build", err=True)
        return
    print_images(images, dry_run=request.dry_run)


def status(image: BuiltImage, *, dry_run: bool) -> str:
    if dry_run:
        return "exists" if image.digest else "would build"
    if image.built:
        return "built, pushed" if image.pushed else "built (not pushed)"
    if image.pushed:
        return "reused, tagged"
    return "exists in registry" if image.digest else "reused local image"


def print_images(images: tuple[BuiltImage, ...], *, dry_run: bool) -> None:
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200, soft_wrap=False)
    table = Table(title="images" + (" · dry run" if dry_run else ""), title_justify="left")
    for column in ("environment", "image", "tags", "status"):
        table.add_column(column, overflow="fold")
    for image in images:
        table.add_row(image.env_name, image.uri, ", ".join(image.tags) or "-", status(image, dry_run=dry_run))
    console.print(table)

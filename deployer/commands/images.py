"""`flyte-deploy images`: the `--image NAME=URI` map of a deploy, building what needs building."""

from __future__ import annotations

import enum
import json
import shlex
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.models import BuiltImage, CopyStyle, Mode, Plan


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
    output_format: FormatOpt = Format.args,
) -> None:
    """Print the image of every environment (built images by digest; with --dry-run nothing is built)."""
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
    built = build_images(
        planned.plan, planned.graph, planned.git, image_options(request), line_progress(output.progress)
    )
    mapping = image_map(planned.plan, built)
    if output_format is Format.json:
        print(json.dumps(mapping, indent=2))
    else:
        print(" ".join(f"--image {shlex.quote(f'{name}={uri}')}" for name, uri in mapping.items()))


def image_map(plan: Plan, built: tuple[BuiltImage, ...]) -> dict[str, str]:
    """{name: uri}: a ref image under its ref name, every other environment under its own name."""
    by_env = {image.env_name: image.uri for image in built}
    mapping: dict[str, str] = {}
    for env in plan.environments:
        uri = by_env.get(env.name) or env.image.uri
        if uri:
            mapping.setdefault(env.image.ref_name or env.name, uri)
    return mapping

"""`flyte-deploy plan`: what a deploy would do, without building, pushing or uploading anything."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from deployer.commands import options as o
from deployer.models import CopyStyle, Mode, Plan


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
    as_json: o.JsonOpt = False,
) -> None:
    """Show the version, environments (in deploy order), images, modes and bundle of a deploy."""
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
    )
    from deployer.plan import plan_request

    plan = plan_request(request).plan
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print(json.dumps(plan.model_dump(mode="json"), indent=2))
    else:
        print_plan(plan)


def print_plan(plan: Plan) -> None:
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    git = plan.git
    where = f"sha {git.sha[:12]}" if git.sha else "no git commit"
    if git.pr is not None:
        where += f" · PR #{git.pr}"
    if git.dirty:
        where += " · dirty"
    release = " · release" if plan.release else ""
    title = f"{plan.project}/{plan.domain} · version {plan.version} · {where}{release}"
    table = Table(title=title, title_justify="left")
    for column in ("#", "environment", "depends on", "tasks", "image", "mode"):
        table.add_column(column, overflow="fold")
    for index, env in enumerate(plan.environments, start=1):
        if env.image.uri:
            image = env.image.uri
        elif env.image.base:
            image = f"build on {env.image.base}"
        else:
            image = f"build {env.image.spec_id[:12]}"
        table.add_row(
            str(index),
            env.name,
            ", ".join(env.depends_on) or "-",
            "\n".join(env.tasks) or "-",
            image,
            f"{env.mode}: {env.mode_reason}",
        )
    console.print(table)
    if plan.bundle is None:
        console.print("bundle: none (--copy-style none)", highlight=False)
    else:
        digest = (plan.bundle.digest or "")[:12]
        count = len(plan.bundle.files)
        console.print(
            f"bundle: {plan.bundle.copy_style.value}, {count} file{'s' * (count != 1)}, sha256 {digest}",
            highlight=False,
        )
    console.print(f"image tags: {', '.join(plan.image_tags)}", highlight=False)

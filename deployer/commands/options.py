"""Flags shared by several commands, with their environment-variable overrides.

One definition per flag keeps meanings identical across `plan`, `bundle`, `build`, `images` and
`deploy` (and identical to `flyte deploy` where the flag exists there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from deployer.models import CopyStyle, DeployRequest, Mode

PathArg = Annotated[
    Path | None,
    typer.Argument(help="Python file to import (with VAR or --all), or a directory with --recursive."),
]
VarArg = Annotated[
    str | None, typer.Argument(help="Module-level variable bound to the TaskEnvironment to deploy.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every environment created while importing FILE.")]
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive", "-r", help="Import every .py under DIR (git-ignored paths skipped).")
]
RootDirOpt = Annotated[
    Path | None,
    typer.Option("--root-dir", help="Import root and bundle root. Default: current directory."),
]
CopyStyleOpt = Annotated[
    CopyStyle,
    typer.Option(
        "--copy-style",
        case_sensitive=False,
        help="Code files to ship: loaded_modules (alias auto), all, or none.",
        envvar="FLYTE_DEPLOY_COPY_STYLE",
    ),
]
ModeOpt = Annotated[
    Mode,
    typer.Option(
        "--mode",
        case_sensitive=False,
        help="container (code baked into the image), bundle (code tarball in blob storage), or auto "
        "(container when a Docker engine answers, else bundle).",
        envvar="FLYTE_DEPLOY_MODE",
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option("--version", help="Explicit version. Default: the semver tag, else derived from git."),
]
ShaOpt = Annotated[str | None, typer.Option("--sha", help="Commit to read instead of HEAD.")]
ProjectOpt = Annotated[
    str, typer.Option("--project", "-p", envvar="FLYTE_DEPLOY_PROJECT", help="Flyte project.")
]
DomainOpt = Annotated[str, typer.Option("--domain", "-d", envvar="FLYTE_DEPLOY_DOMAIN", help="Flyte domain.")]
OrgOpt = Annotated[str, typer.Option("--org", envvar="FLYTE_DEPLOY_ORG", help="Flyte organization.")]
RegistryOpt = Annotated[
    str | None,
    typer.Option("--registry", envvar="FLYTE_DEPLOY_REGISTRY", help="Registry to push built images to."),
]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--image",
        help="NAME=URI fills Image.from_ref_name(NAME); a bare URI is the default image. Repeatable.",
    ),
]
MirrorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--base-image-mirror",
        help="FROM=TO rewrite of base image references (air-gapped registries). Repeatable.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Build, push, upload and register nothing.")]
PushOpt = Annotated[bool, typer.Option("--push/--no-push", help="Push built images (--no-push: build only).")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        envvar="FLYTE_DEPLOY_ENDPOINT",
        help="Flyte control plane URL. Default: the embedded control plane.",
    ),
]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Plain HTTP to the control plane.")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="FLYTE_DEPLOY_API_KEY",
        help="Bearer token for the control plane.",
        show_default=False,
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="FLYTE_DEPLOY_STORAGE",
        help="Bundle storage: file://DIR or s3://bucket/prefix. Default: file storage in the state dir.",
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="FLYTE_DEPLOY_STATE_DIR",
        help="Embedded control plane and local storage state. Default: ROOT_DIR/.flyte-deploy.",
    ),
]


def mirrors_from_env(explicit: list[str] | None) -> tuple[str, ...]:
    """`FLYTE_DEPLOY_BASE_IMAGE_MIRROR` holds space/comma/newline-separated FROM=TO pairs."""
    import os
    import re

    from_env = [p for p in re.split(r"[\s,]+", os.environ.get("FLYTE_DEPLOY_BASE_IMAGE_MIRROR", "")) if p]
    return tuple(from_env + list(explicit or []))


def build_request(
    *,
    path: Path | None = None,
    env_var: str | None = None,
    all_envs: bool = False,
    recursive: bool = False,
    root_dir: Path | None = None,
    copy_style: CopyStyle = CopyStyle.loaded_modules,
    mode: Mode = Mode.auto,
    version: str | None = None,
    sha: str | None = None,
    project: str = "flytesnacks",
    domain: str = "development",
    org: str = "",
    registry: str | None = None,
    images: list[str] | None = None,
    base_image_mirrors: list[str] | None = None,
    push: bool = True,
    dry_run: bool = False,
    endpoint: str | None = None,
    insecure: bool = False,
    api_key: str | None = None,
    storage: str | None = None,
    state_dir: Path | None = None,
) -> DeployRequest:
    """Turn parsed flags into the one request model the pipeline takes."""
    return DeployRequest(
        path=path,
        env_var=env_var,
        all_envs=all_envs,
        recursive=recursive,
        root_dir=(root_dir or Path.cwd()).resolve(),
        copy_style=copy_style,
        mode=mode,
        version=version,
        sha=sha,
        project=project,
        domain=domain,
        org=org,
        registry=registry,
        images=tuple(images or ()),
        base_image_mirrors=mirrors_from_env(base_image_mirrors),
        push=push,
        dry_run=dry_run,
        endpoint=endpoint,
        insecure=insecure,
        api_key=SecretStr(api_key) if api_key else None,
        storage=storage,
        state_dir=state_dir,
    )

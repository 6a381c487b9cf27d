"""`flyte-deploy version`: the Flyte version and image tags git gives this checkout."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from deployer.commands import options as o
from deployer.errors import UsageError


def command(
    root_dir: o.RootDirOpt = None,
    sha: o.ShaOpt = None,
    version: o.VersionOpt = None,
    as_json: o.JsonOpt = False,
) -> None:
    """Print the version (semver tag, else commit SHA, plus a content hash when dirty) and image tags."""
    root = root_dir or Path.cwd()
    if not root.is_dir():
        raise UsageError(f"--root-dir {root}: not a directory")
    from deployer.gitctx import read_git_context
    from deployer.versioning import version_info

    info = version_info(read_git_context(root, sha=sha), override=version)
    for warning in info.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print(json.dumps(info.model_dump(mode="json"), indent=2))
        return
    print(info.version)
    print(f"image tags: {', '.join(info.image_tags)}")
    flags = [name for name, on in (("release", info.release), ("dirty", info.dirty)) if on]
    if info.pr is not None:
        flags.append(f"PR #{info.pr}")
    if flags:
        print(", ".join(flags))

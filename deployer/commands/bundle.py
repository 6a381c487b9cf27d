"""`flyte-deploy bundle`: build the deterministic code bundle a deploy would upload."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.errors import BundleError, UsageError
from deployer.models import BundleArtifact, CopyStyle, DeployRequest

OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Where to write the bundle: a directory (ending in / or existing) gets <sha256>.tar.gz, "
        "anything else is the file name. Default: ROOT_DIR/.flyte-deploy/build/.",
    ),
]


def command(
    path: o.PathArg = None,
    env_var: o.VarArg = None,
    all_envs: o.AllOpt = False,
    recursive: o.RecursiveOpt = False,
    root_dir: o.RootDirOpt = None,
    copy_style: o.CopyStyleOpt = CopyStyle.loaded_modules,
    output: OutputOpt = None,
    as_json: o.JsonOpt = False,
) -> None:
    """Build the code bundle (a reproducible .tar.gz named by its sha256) without uploading it."""
    from deployer.bundle import build_bundle, select

    request = o.build_request(
        path=path,
        env_var=env_var,
        all_envs=all_envs,
        recursive=recursive,
        root_dir=root_dir,
        copy_style=copy_style,
    )
    style = request.copy_style.resolved()
    if style is CopyStyle.none:
        raise UsageError("--copy-style none: there is no bundle to build")
    loaded, includes = _discover(request)
    selection = select(request.root_dir, style, loaded, includes)
    assert selection is not None  # only `none` selects nothing, and it was refused above
    for warning in selection.warnings:
        typer.echo(f"warning: {warning}", err=True)
    out_dir, name = _destination(output, request.root_dir)
    if name is None:
        artifact = build_bundle(request.root_dir, selection.files, out_dir)
    else:
        # Built beside the target, so a `<sha256>.tar.gz` already in that directory is left alone.
        with _scratch_dir(out_dir) as scratch:
            artifact = _rename(build_bundle(request.root_dir, selection.files, scratch), out_dir / name)
    _emit(artifact, style, request.root_dir, as_json=as_json)


def _discover(request: DeployRequest) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """Loaded module files and `include` entries of the environments the request names."""
    if request.path is None:
        if request.copy_style.resolved() is CopyStyle.loaded_modules:
            raise UsageError(
                "--copy-style loaded_modules needs FILE VAR, --all FILE or --recursive DIR "
                "(the bundle holds the modules that importing them loads)"
            )
        return (), ()
    from deployer.bundle import env_includes
    from deployer.discovery import discover
    from deployer.graph import resolve

    graph = resolve(discover(request))
    return tuple(graph.loaded_files), env_includes(node.env for node in graph.environments)


def _destination(output: str | None, root_dir: Path) -> tuple[Path, str | None]:
    if output is None:
        return root_dir / ".flyte-deploy" / "build", None
    path = Path(output).absolute()
    if path.is_dir() or output.endswith(("/", os.sep)):
        return path, None
    if path.exists() and not path.is_file():
        raise UsageError(f"-o {output}: exists and is not a regular file or a directory")
    return path.parent, path.name


@contextlib.contextmanager
def _scratch_dir(parent: Path) -> Iterator[Path]:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=parent, prefix=".bundle-") as scratch:
            yield Path(scratch)
    except OSError as exc:
        raise BundleError(f"cannot write to {parent}: {exc.strerror}") from exc


def _rename(artifact: BundleArtifact, target: Path) -> BundleArtifact:
    try:
        os.replace(artifact.path, target)
    except OSError as exc:
        raise BundleError(f"cannot write {target}: {exc.strerror}") from exc
    return artifact.model_copy(update={"path": target})


def _emit(artifact: BundleArtifact, style: CopyStyle, root_dir: Path, *, as_json: bool) -> None:
    if as_json:
        document = {
            "digest": artifact.digest,
            "size": artifact.size,
            "files": list(artifact.files),
            "copy_style": style.value,
            "root_dir": str(root_dir),
            "path": str(artifact.path.resolve()),
        }
        print(json.dumps(document, indent=2))
        return
    count = len(artifact.files)
    typer.echo(f"{artifact.path}")
    typer.echo(
        f"sha256 {artifact.digest} · {artifact.size} bytes · {count} file{'s' * (count != 1)} "
        f"· copy style {style.value} · root {root_dir}"
    )

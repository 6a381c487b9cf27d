"""`flyte-deploy bundle`: build the deterministic code bundle a deploy would upload."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.errors import BundleError, UsageError
from deployer.models import BundleArtifact
from deployer.request import DeployRequest

OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Where to write the bundle: a directory (ending in / or existing) gets <sha256>.tar.gz, "
        "anything else is the file name. Default: ROOT_DIR/.flyte-deploy/build/.",
    ),
]


@o.uses_request("root", "code", selection=True)
def command(request: DeployRequest, output: OutputOpt = None, as_json: o.JsonOpt = False) -> None:
    """Build the code bundle (a reproducible .tar.gz named by its sha256) without uploading it."""
    from deployer import output as show
    from deployer.bundle import build_bundle, select_for

    root_dir = request.settings.root
    style = request.settings.copy_style.resolved()
    selection = select_for(request)
    progress = show.ConsoleProgress()
    for warning in selection.warnings:
        progress.warning(warning)
    out_dir, name = _destination(output, root_dir)
    if name is None:
        artifact = build_bundle(root_dir, selection.files, out_dir)
    else:
        # Built beside the target, so a `<sha256>.tar.gz` already in that directory is left alone.
        with _scratch_dir(out_dir) as scratch:
            artifact = _rename(build_bundle(root_dir, selection.files, scratch), out_dir / name)
    show.emit_bundle(artifact, copy_style=style.value, root_dir=root_dir, as_json=as_json)


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

"""Deterministic code bundles: which files, the exact bytes, and safe extraction.

The same files (paths, content, executable bit) give the same `<sha256>.tar.gz` on any machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer import sdk
from deployer.bundle.archive import archive_digest, build_bundle
from deployer.bundle.extract import extract_bundle
from deployer.bundle.selection import Selection, select
from deployer.errors import BundleError, UsageError
from deployer.models import BundleSpec, CopyStyle

if TYPE_CHECKING:
    from deployer.request import DeployRequest

__all__ = [
    "BundleSpec",
    "Selection",
    "build_bundle",
    "bundle_spec",
    "env_includes",
    "extract_bundle",
    "select",
    "select_files",
    "select_for",
]


def select_files(
    root_dir: Path, copy_style: CopyStyle, loaded_files: Sequence[Path], includes: Sequence[str]
) -> tuple[str, ...]:
    """Sorted POSIX paths (relative to root_dir) a bundle holds; empty for copy style `none`.

    `includes` are absolute paths, or paths relative to root_dir: files, directories or globs
    (see `env_includes`).
    """
    selection = select(root_dir, copy_style, loaded_files, includes)
    return selection.files if selection is not None else ()


def bundle_spec(
    root_dir: Path, copy_style: CopyStyle, loaded_files: Sequence[Path], includes: Sequence[str]
) -> BundleSpec | None:
    """The bundle a deploy would upload, with the digest of its exact bytes; None for `none`.

    Reads (and compresses, in memory) every selected file, but writes nothing.
    """
    selection = select(root_dir, copy_style, loaded_files, includes)
    if selection is None:
        return None
    digest, size = archive_digest(root_dir, selection.files)
    return BundleSpec(
        copy_style=copy_style.resolved(),
        files=selection.files,
        digest=digest,
        size=size,
        warnings=selection.warnings,
    )


def env_includes(envs: Iterable[Any]) -> tuple[str, ...]:
    """Absolute paths named by the environments' `include`, as Flyte anchors them.

    A relative entry is relative to the directory of the file that created the environment.
    """
    resolved: list[str] = []
    for env in envs:
        entries = tuple(getattr(env, "include", ()) or ())
        if not entries:
            continue
        declaring = sdk.declaring_file(env)
        for entry in entries:
            path = Path(entry)
            if not path.is_absolute():
                if declaring is None:
                    raise BundleError(
                        f"environment {env.name!r} has include={entries!r} but the file that "
                        "created it is unknown, so relative entries cannot be placed"
                    )
                path = Path(declaring).parent / path
            if str(path) not in resolved:
                resolved.append(str(path))
    return tuple(resolved)


def select_for(request: DeployRequest) -> Selection:
    """The files a bundle of `request` holds: import what it names (for `loaded_modules` and `include`
    entries), then select by its copy style."""
    settings = request.settings
    style = settings.copy_style.resolved()
    if style is CopyStyle.none:
        raise UsageError("--copy-style none: there is no bundle to build")
    loaded: tuple[Path, ...] = ()
    includes: tuple[str, ...] = ()
    if request.selection.path is not None:
        from deployer.discovery import FlyteScope, discover
        from deployer.graph import resolve

        scope = FlyteScope(project=settings.project, domain=settings.domain, org=settings.org)
        graph = resolve(discover(request.selection, settings.root, scope))
        loaded, includes = tuple(graph.loaded_files), env_includes(node.env for node in graph.environments)
    elif style is CopyStyle.loaded_modules:
        raise UsageError(
            "--copy-style loaded_modules needs FILE VAR, --all FILE or --recursive DIR "
            "(the bundle holds the modules that importing them loads)"
        )
    selection = select(settings.root, style, loaded, includes)
    assert selection is not None  # only `none` selects nothing, and it was refused above
    return selection

"""The layer registry: every `flyte.Image` layer type, its renderer and its kind, in one table.

A layer type missing here is a `BuildError` naming it, never silently dropped; a test checks that
every Layer subclass the installed SDK defines is registered.

Rendering order: system packages, then Python dependencies, then code, so a code change never
invalidates the dependency layers. Layers are only moved within a stretch between "barrier" layers
(commands, env vars, workdir, raw Docker lines), because those can depend on, or change the meaning
of, anything before or after them; and a Python layer that installs from a local path stays put,
because it may need files an earlier copy layer put in place.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from deployer.errors import BuildError
from deployer.images import renderers as r
from deployer.sdk import (
    AptPackages,
    CodeBundleLayer,
    Commands,
    CopyConfig,
    DockerIgnore,
    Env,
    Layer,
    PipPackages,
    PixiProject,
    PixiScript,
    PoetryProject,
    PythonWheels,
    Requirements,
    UVProject,
    UVScript,
    WorkDir,
)
from deployer.sdk import (
    DockerLines as _DockerLines,
)


class Kind(enum.IntEnum):
    """Sort rank inside a stretch between barriers."""

    system = 0
    python = 1
    code = 2
    barrier = 3
    neutral = 4
    """Emits no Dockerfile line (DockerIgnore): may sit anywhere."""


@dataclass(frozen=True)
class LayerType:
    kind: Kind
    render: r.Renderer


LAYER_TYPES: Mapping[type[Layer], LayerType] = MappingProxyType(
    {
        AptPackages: LayerType(Kind.system, r.apt),
        Requirements: LayerType(Kind.python, r.requirements),
        PipPackages: LayerType(Kind.python, r.pip),
        PythonWheels: LayerType(Kind.python, r.wheels),
        UVProject: LayerType(Kind.python, r.uv_project),
        UVScript: LayerType(Kind.python, r.uv_script),
        PoetryProject: LayerType(Kind.python, r.poetry_project),
        PixiProject: LayerType(Kind.python, r.pixi),
        PixiScript: LayerType(Kind.python, r.pixi),
        CopyConfig: LayerType(Kind.code, r.copy_config),
        CodeBundleLayer: LayerType(Kind.code, r.code_bundle),
        Commands: LayerType(Kind.barrier, r.commands),
        Env: LayerType(Kind.barrier, r.env),
        WorkDir: LayerType(Kind.barrier, r.workdir),
        _DockerLines: LayerType(Kind.barrier, r.docker_lines),
        DockerIgnore: LayerType(Kind.neutral, r.dockerignore),
    }
)

_LOCAL_PREFIXES = (".", "/", "-e", "--editable", "file:")


def layer_type(layer: Layer) -> LayerType | None:
    """The registered type of `layer` (exact class: a subclass may render differently), or None."""
    return LAYER_TYPES.get(type(layer))


def kind_of(layer: Layer) -> Kind | None:
    """The layer's kind, or None for a type this version does not know."""
    registered = layer_type(layer)
    return registered.kind if registered else None


def is_python(layer: Layer) -> bool:
    return kind_of(layer) is Kind.python


def render_layer(layer: Layer, ctx: r.LayerContext) -> list[str]:
    registered = layer_type(layer)
    if registered is None:
        raise BuildError(
            f"image {ctx.image_name!r}: layer type {type(layer).__module__}.{type(layer).__qualname__} "
            "is not supported by flyte-deploy"
        )
    return registered.render(layer, ctx)


def _installs_local_path(layer: Layer) -> bool:
    if type(layer) is PipPackages:
        return any(p.strip().startswith(_LOCAL_PREFIXES) for p in layer.packages or ())
    if type(layer) is Requirements and layer.file.is_file():
        lines = layer.file.read_text(encoding="utf-8", errors="replace").splitlines()
        return any(line.strip().startswith(_LOCAL_PREFIXES) for line in lines)
    return False


def ordered(layers: Sequence[Layer]) -> tuple[Layer, ...]:
    """Stable reorder: within each stretch between barriers, system < python < code."""
    result: list[Layer] = []
    stretch: list[Layer] = []

    def flush() -> None:
        result.extend(sorted(stretch, key=lambda layer: _rank(layer)))
        stretch.clear()

    for layer in layers:
        kind = kind_of(layer)
        if kind is None or kind is Kind.barrier or _installs_local_path(layer):
            flush()
            result.append(layer)
        else:
            stretch.append(layer)
    flush()
    return tuple(result)


def _rank(layer: Layer) -> int:
    kind = kind_of(layer)
    # A neutral layer emits nothing; keep it out of the way at the end of its stretch.
    return int(kind) if kind is not None else int(Kind.barrier)

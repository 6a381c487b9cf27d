"""Layer kinds of `flyte.Image` and the cache-friendly order they are rendered in.

Rendering order: system packages, then Python dependencies, then code, so a code change never
invalidates the dependency layers. Layers are only moved within a stretch between "barrier" layers
(commands, env vars, workdir, raw Docker lines), because those can depend on, or change the meaning
of, anything before or after them; and a Python layer that installs from a local path stays put,
because it may need files an earlier copy layer put in place.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from flyte._image import (
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
    _DockerLines,
)


class Kind(enum.IntEnum):
    """Sort rank inside a stretch between barriers."""

    system = 0
    python = 1
    code = 2
    barrier = 3
    neutral = 4
    """Emits no Dockerfile line (DockerIgnore): may sit anywhere."""


_KINDS: tuple[tuple[type[Layer], Kind], ...] = (
    (AptPackages, Kind.system),
    (Requirements, Kind.python),
    (PipPackages, Kind.python),
    (PythonWheels, Kind.python),
    (UVProject, Kind.python),
    (UVScript, Kind.python),
    (PoetryProject, Kind.python),
    (PixiProject, Kind.python),
    (PixiScript, Kind.python),
    (CopyConfig, Kind.code),
    (CodeBundleLayer, Kind.code),
    (Commands, Kind.barrier),
    (Env, Kind.barrier),
    (WorkDir, Kind.barrier),
    (_DockerLines, Kind.barrier),
    (DockerIgnore, Kind.neutral),
)

_LOCAL_PREFIXES = (".", "/", "-e", "--editable", "file:")


def kind_of(layer: Layer) -> Kind | None:
    """The layer's kind, or None for a type this version does not know."""
    for cls, kind in _KINDS:
        if type(layer) is cls:
            return kind
    return None


def is_python(layer: Layer) -> bool:
    return kind_of(layer) is Kind.python


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

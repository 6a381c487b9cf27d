"""An environment's image as planned: which reference it runs, whether it must be built, and a stable
identifier of its spec.

`spec_id` hashes what the spec says (base reference, Dockerfile, layers with the *content* of the
files they copy, platforms, Python version of a built image) and nothing about where it runs: no
registry, image name, git state or absolute path, so two clones of one commit agree on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flyte

from deployer.bundle.ignore import IgnoreRules
from deployer.errors import PlanError, UsageError
from deployer.models import ImageSpec, Model
from deployer.sdk import DEFAULT_IMAGE_REF_NAME

# distribution/reference grammar (the rules `docker pull` applies).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
_REF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_NAME = 255
_UNREADABLE = (Path("/proc"), Path("/sys"), Path("/dev"))
# What `Image.from_ref_name()` without a name refers to: the bare `--image URI`.
DEFAULT_REF = DEFAULT_IMAGE_REF_NAME


class ImageMap(Model):
    """`--image` values: `NAME=URI` fills `Image.from_ref_name(NAME)`, a bare `URI` is the default."""

    named: Mapping[str, str] = {}
    default: str | None = None


def reference_problem(value: str) -> str | None:
    """Why `value` is not a valid image reference (`[host[:port]/]path[:tag][@digest]`), or None."""
    if not value:
        return "empty image reference"
    if value != value.strip():
        return "image reference has surrounding whitespace"
    match = _REFERENCE.fullmatch(value)
    if match is None:
        if _REFERENCE.fullmatch(value.lower()):
            return "repository names must be lower case"
        return "not an image reference ([host[:port]/]name[:tag][@algo:hex])"
    if len(match.group("name")) > _MAX_NAME:
        return f"repository name longer than {_MAX_NAME} characters"
    return None


def check_reference(value: str, *, what: str) -> str:
    problem = reference_problem(value)
    if problem:
        raise UsageError(f"{what} {value!r}: {problem}")
    return value


def parse_image_map(values: Sequence[str]) -> ImageMap:
    """Parse repeated `--image` values; any malformed one is a UsageError naming it."""
    named: dict[str, str] = {}
    default: str | None = None
    for raw in values:
        name, sep, uri = raw.partition("=")
        if not sep:
            name, uri = DEFAULT_REF, raw
        elif not name.strip() or not uri.strip():
            raise UsageError(f"--image {raw!r}: expected NAME=URI (both non-empty) or a bare URI")
        elif not _REF_NAME.fullmatch(name):
            raise UsageError(f"--image {raw!r}: image name {name!r} may only use [A-Za-z0-9._-]")
        check_reference(uri, what=f"--image {raw!r}: image")
        previous = default if name == DEFAULT_REF else named.get(name)
        if previous is not None and previous != uri:
            label = "the default image" if name == DEFAULT_REF else f"image {name!r}"
            raise UsageError(f"--image {raw!r}: {label} is already mapped to {previous!r}")
        if name == DEFAULT_REF:
            default = uri
        else:
            named[name] = uri
    return ImageMap(named=dict(sorted(named.items())), default=default)


def image_spec(env: Any, image_map: ImageMap, *, copy_style: str | None = None) -> ImageSpec:
    """Plan `env.image` as its spec says, before any code is added.

    - external (string image, mapped `from_ref_name` without layers, `"auto"` with a bare `--image`):
      `uri` set, nothing to build, deployed as-is in every mode;
    - an unmodified `from_base`/`from_debian_base` image (and `"auto"` without a default, which is
      Flyte's `from_debian_base()`): `uri` = that image, nothing to build for its spec; container
      mode still builds the code on top of it;
    - anything with layers or a Dockerfile: `needs_build`, `uri` unknown until built.

    `with_code_bundle()` layers count only when the deploy ships no bundle (`copy_style` none), as
    in Flyte: otherwise an image with no other layer is its base, and nothing is built for it.
    """
    image = env.image
    if image is None or image == "auto":
        if image_map.default:
            return _as_is(image_map.default, external=True)
        # Flyte's own choice for "auto": its released default image for this SDK and Python.
        image = flyte.Image.from_debian_base()
    if isinstance(image, str):
        problem = reference_problem(image)
        if problem:
            raise PlanError(f"environment {env.name!r}: image {image!r}: {problem}")
        return _as_is(image, external=True)
    if not isinstance(image, flyte.Image):
        kind = type(image).__name__
        raise PlanError(f"environment {env.name!r}: image must be a str or flyte.Image, got {kind}")

    ref_name = image._ref_name
    base = image.base_image
    if ref_name is not None:
        base = mapped_uri(env.name, ref_name, image_map)
        if not image._layers:
            return _as_is(base, ref_name=ref_name, external=True)
    elif base and not image.dockerfile and (not image._is_cloned or _only_code_bundles(image, copy_style)):
        # An unmodified `from_base`/`from_debian_base` image already exists: Flyte never builds it.
        return _as_is(base, external=False)
    description = _describe(image, base)
    return ImageSpec(ref_name=ref_name, spec_id=_digest(description), needs_build=True, base=base)


def _only_code_bundles(image: flyte.Image, copy_style: str | None) -> bool:
    from deployer.sdk import CodeBundleLayer

    ships_bundle = copy_style is not None and copy_style != "none"
    return ships_bundle and all(isinstance(layer, CodeBundleLayer) for layer in image._layers)


def mapped_uri(env_name: str, ref_name: str, image_map: ImageMap) -> str:
    """The URI `--image` maps `Image.from_ref_name(ref_name)` to; an unmapped name is a PlanError."""
    if ref_name == DEFAULT_REF and image_map.default:
        return image_map.default
    uri = image_map.named.get(ref_name)
    if uri is None:
        known = ", ".join(image_map.named) or "none"
        raise PlanError(
            f"environment {env_name!r} uses Image.from_ref_name({ref_name!r}) but no --image {ref_name}=URI "
            f"was given (mapped names: {known})"
        )
    return uri


def _as_is(uri: str, *, external: bool, ref_name: str | None = None) -> ImageSpec:
    return ImageSpec(
        ref_name=ref_name,
        spec_id=_digest({"base": uri}),
        uri=uri,
        needs_build=False,
        base=uri,
        external=external,
    )


def _describe(image: flyte.Image, base: str | None) -> dict[str, Any]:
    return {
        "base": base,
        "dockerfile": _describe_path(image.dockerfile.parent) if image.dockerfile else None,
        "dockerfile_name": image.dockerfile.name if image.dockerfile else None,
        "platform": list(image.platform),
        "python": ".".join(str(p) for p in image.python_version),
        "layers": [_describe_value(layer) for layer in image._layers],
    }


def _describe_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _describe_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"kind": type(value).__name__, **fields}
    if isinstance(value, Path):
        return _describe_path(value)
    if isinstance(value, tuple | list):
        return [_describe_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe_value(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _describe_path(path: Path) -> dict[str, Any]:
    """Content, not location: the same files at another absolute path describe the same image. A
    directory's own name is left out (a checkout's folder name differs between clones; where it lands
    in the image is the layer's `dst`)."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or any(resolved.is_relative_to(v) for v in _UNREADABLE):
        # Walking these never ends (/proc/kmsg blocks a reader forever): refuse before reading.
        what = "the filesystem root" if resolved == Path(resolved.anchor) else "a virtual filesystem"
        raise PlanError(f"image layer source {path} is {what}: it cannot go into an image")
    if path.is_file():
        return {"file": path.name, "sha256": _file_sha256(path).hexdigest()}
    if path.is_dir():
        return {"dir_sha256": _tree_digest(path)}
    return {"missing": path.name}


def _tree_digest(root: Path) -> str:
    # Importing user code writes __pycache__ into source folders: standard ignores keep the id stable.
    rules = IgnoreRules(root, standard=True, gitignore=False, flyteignore=False)
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirnames[:] = sorted(d for d in dirnames if not rules.ignored(f"{prefix}{d}", is_dir=True))
        for name in sorted(filenames):
            rel = f"{prefix}{name}"
            path = Path(dirpath) / name
            if rules.ignored(rel, is_dir=False) or not path.is_file():
                continue
            digest.update(rel.encode("utf-8") + b"\0" + _file_sha256(path).digest())
    return digest.hexdigest()


def _file_sha256(path: Path) -> Any:
    """In chunks: a layer may copy a file of any size."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest


def _digest(description: Mapping[str, Any]) -> str:
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

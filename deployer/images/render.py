"""`flyte.Image` → Dockerfile + deterministic build context, through the templates in `templates/dockerfile/`.

Every layer type of the pinned SDK has a handler here and a partial template; a type without one is
a `BuildError` naming it, never silently dropped. The output is written for docker-py's legacy
builder: no `RUN --mount`, so files a step needs are COPY'd into a staging directory first, and a
layer that needs BuildKit (secret mounts) is refused with the layer named.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from flyte._image import (
    AptPackages,
    CodeBundleLayer,
    Commands,
    CopyConfig,
    DockerIgnore,
    Env,
    Image,
    Layer,
    PipOption,
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

from deployer.errors import BuildError
from deployer.images import layers as layer_kinds
from deployer.images.context import BuildContext
from deployer.images.tags import apply_mirrors, identity_tag
from deployer.templating import render

UV_VERSION = "0.13.8"
POETRY_REQUIREMENT = "poetry>=2,<3"
STAGING = "/opt/flyte-deploy/layers"
DOCKERFILE = ".flyte-deploy/Dockerfile"

CodeSelector = Callable[[str], tuple[str, ...]]
"""copy style (`loaded_modules`/`all`) → files relative to root_dir: the bundle's file selection."""


@dataclass(frozen=True)
class CodeFiles:
    """The project code baked into a container-mode image as its last layer."""

    root_dir: Path
    files: tuple[str, ...]
    """POSIX paths relative to root_dir."""
    dst: str = "."
    """Destination in the image; "." is the working directory, where Flyte's runtime imports from."""
    sys_paths: tuple[str, ...] = ()
    """Folders under root_dir (POSIX, relative) that must be import roots too, besides the code root."""


@dataclass(frozen=True, eq=False)
class RenderedImage:
    dockerfile: str
    context: BuildContext
    dockerfile_path: str = DOCKERFILE
    base: str | None = None
    """The FROM reference after mirror rewrites (None for a user Dockerfile)."""
    identity: str = field(init=False)
    """`build-<hash>`: a hash of the context tarball, which holds the Dockerfile and every copied byte."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", identity_tag(self.context.sha256()))


@dataclass
class _Layer:
    """What a handler sees: the layer, its position, and the shared build context."""

    index: int
    image_name: str
    context: BuildContext
    root_dir: Path
    ignore_patterns: list[str]
    mirrors: tuple[tuple[str, str], ...]
    emitted: set[str]
    """Names of once-per-image blocks already emitted (e.g. the uv bootstrap)."""

    def once(self, key: str, block: str) -> list[str]:
        if key in self.emitted:
            return []
        self.emitted.add(key)
        return [block]

    @property
    def staging(self) -> str:
        return f"{STAGING}/{self.index:02d}"

    def stage(self, kind: str) -> str:
        return f"layers/{self.index:02d}-{kind}"


def render_image(
    image: Image | None,
    *,
    base: str | None,
    root_dir: Path,
    mirrors: tuple[tuple[str, str], ...] = (),
    code: CodeFiles | None = None,
    copy_style: str = "loaded_modules",
    select_code: CodeSelector | None = None,
    name: str = "image",
) -> RenderedImage:
    """Render `image` (layers on top of `base`) plus, when given, `code` as the last layer.

    `base` is the FROM reference before mirrors: the image's own base, or the URI a ref name maps to.
    `image=None` means "just `base`" (a plain URI or `auto`), which only needs building for `code`.
    """
    if image is not None and image.dockerfile is not None:
        return _render_dockerfile_image(image, root_dir=root_dir, mirrors=mirrors, code=code, name=name)
    if not base:
        raise BuildError(f"image {name!r} has no base image to build on")
    context = BuildContext()
    source_layers = _resolve_code_bundle_layers(image._layers if image else (), copy_style)
    ignore = _ignore_patterns(source_layers, root_dir)
    blocks: list[str] = []
    emitted: set[str] = set()
    for index, layer in enumerate(layer_kinds.ordered(source_layers), start=1):
        _refuse_secret_mounts(layer, name)
        ctx = _Layer(index, name, context, root_dir, ignore, mirrors, emitted)
        if layer_kinds.is_python(layer):
            blocks += ctx.once("python", render("dockerfile/layers/python_env.j2"))
        blocks.extend(_render_layer(layer, ctx, select_code))
    if code is not None and code.files:
        blocks.append(_code_block(code, context, "code"))
    mirrored = apply_mirrors(base, mirrors)
    dockerfile = render("dockerfile/Dockerfile.j2", base=mirrored, blocks=[b for b in blocks if b.strip()])
    context.add_bytes(DOCKERFILE, dockerfile.encode())
    return RenderedImage(dockerfile=dockerfile, context=context, base=mirrored)


def _render_layer(layer: Layer, ctx: _Layer, select_code: CodeSelector | None) -> list[str]:
    handler = _HANDLERS.get(type(layer))
    if handler is None:
        raise BuildError(
            f"image {ctx.image_name!r}: layer type {type(layer).__module__}.{type(layer).__qualname__} "
            "is not supported by flyte-deploy"
        )
    if isinstance(layer, CodeBundleLayer):
        return [_code_bundle(layer, ctx, select_code)]
    return handler(layer, ctx)


# ---------------------------------------------------------------------------------------------- handlers


def _apt(layer: AptPackages, ctx: _Layer) -> list[str]:
    return [render("dockerfile/layers/apt.j2", packages=[shlex.quote(p) for p in layer.packages])]


def _pip_args(layer: PipOption) -> list[str]:
    args: list[str] = []
    if layer.index_url:
        args += ["--index-url", shlex.quote(layer.index_url)]
    for url in layer.extra_index_urls or ():
        args += ["--extra-index-url", shlex.quote(url)]
    if layer.pre:
        args.append("--pre")
    if layer.extra_args:
        args.append(layer.extra_args)
    return args


def _pip(layer: PipPackages, ctx: _Layer) -> list[str]:
    args = _pip_args(layer) + [shlex.quote(p) for p in layer.packages or ()]
    if len(args) == len(_pip_args(layer)):
        return []
    return [render("dockerfile/layers/pip.j2", args=args, requirements=None)]


def _requirements(layer: Requirements, ctx: _Layer) -> list[str]:
    src = _existing_file(layer.file, "requirements file", ctx)
    arc = ctx.context.add_file(f"{ctx.stage('requirements')}/{src.name}", src)
    dst = f"{ctx.staging}/{src.name}"
    args = [*_pip_args(layer), *(shlex.quote(p) for p in layer.packages or ()), "--requirement", dst]
    return [render("dockerfile/layers/pip.j2", args=args, requirements={"src": _j(arc), "dst": _j(dst)})]


def _wheels(layer: PythonWheels, ctx: _Layer) -> list[str]:
    wheel_dir = _existing_dir(layer.wheel_dir, "wheel directory", ctx)
    wheels = sorted(p.name for p in wheel_dir.glob("*.whl") if p.is_file())
    if not wheels:
        raise BuildError(f"image {ctx.image_name!r}: wheel directory {wheel_dir} holds no .whl files")
    stage = ctx.stage("wheels")
    ctx.context.add_files(stage, wheel_dir, wheels)
    dst = f"{ctx.staging}/wheels"
    return [
        render(
            "dockerfile/layers/wheels.j2",
            src=_j(stage + "/"),
            dst=dst,
            dst_json=_j(dst + "/"),
            args=_pip_args(layer),
            package=shlex.quote(layer.package_name),
        )
    ]


def _uv_project(layer: UVProject, ctx: _Layer) -> list[str]:
    pyproject = _existing_file(layer.pyproject, "pyproject.toml", ctx)
    args = [a for a in _pip_args(layer) if a != "--no-install-project"]
    stage, dst = ctx.stage("uv"), f"{ctx.staging}/project"
    install_project = layer.project_install_mode == "install_project"
    lock = _existing_file(layer.uvlock, "uv.lock", ctx) if layer.uvlock is not None else None
    if install_project:
        _copy_tree(pyproject.parent, stage, ctx, keep=("pyproject.toml", "uv.lock"))
        if lock is not None and f"{stage}/uv.lock" not in ctx.context:
            ctx.context.add_file(f"{stage}/uv.lock", lock)
        files = [{"src": _j(stage + "/"), "dst": _j(dst + "/")}]
    else:
        files = [_copy_file(pyproject, f"{stage}/pyproject.toml", f"{dst}/pyproject.toml", ctx)]
        if lock is not None:
            files.append(_copy_file(lock, f"{stage}/uv.lock", f"{dst}/uv.lock", ctx))
    blocks = ctx.once("uv", render("dockerfile/layers/uv_bootstrap.j2", uv_version=UV_VERSION))
    project = render(
        "dockerfile/layers/uv_project.j2",
        files=files,
        install_project=install_project,
        project_dir=dst,
        args=args,
    )
    return [*blocks, project]


def _uv_script(layer: UVScript, ctx: _Layer) -> list[str]:
    from flyte._utils import parse_uv_script_file

    script = _existing_file(layer.script, "uv script", ctx)
    try:
        header = parse_uv_script_file(script)
    except ValueError as exc:
        raise BuildError(f"image {ctx.image_name!r}: uv script {script}: {exc}") from exc
    blocks: list[str] = []
    if header.dependencies:
        packages = tuple(header.dependencies)
        pip = PipPackages(
            packages=packages,
            index_url=layer.index_url,
            extra_index_urls=layer.extra_index_urls,
            pre=layer.pre,
            extra_args=layer.extra_args,
        )
        blocks += _pip(pip, ctx)
    for number, project in enumerate(header.pyprojects or ()):
        project_dir = (script.parent / project).resolve()
        uvlock = project_dir / "uv.lock"
        sub = replace(ctx, index=ctx.index * 100 + number)
        blocks += _uv_project(
            UVProject(
                pyproject=project_dir / "pyproject.toml",
                uvlock=uvlock if uvlock.exists() else None,
                project_install_mode="install_project",
                pre=layer.pre,
                extra_args=layer.extra_args,
            ),
            sub,
        )
    return blocks


def _poetry_project(layer: PoetryProject, ctx: _Layer) -> list[str]:
    pyproject = _existing_file(layer.pyproject, "pyproject.toml", ctx)
    stage, dst = ctx.stage("poetry"), f"{ctx.staging}/project"
    args = [layer.extra_args] if layer.extra_args else []
    if layer.project_install_mode == "install_project":
        _copy_tree(pyproject.parent, stage, ctx, keep=("pyproject.toml", "poetry.lock"))
        files = [{"src": _j(stage + "/"), "dst": _j(dst + "/")}]
    else:
        lock = _existing_file(layer.poetry_lock, "poetry.lock", ctx)
        files = [
            _copy_file(pyproject, f"{stage}/pyproject.toml", f"{dst}/pyproject.toml", ctx),
            _copy_file(lock, f"{stage}/poetry.lock", f"{dst}/poetry.lock", ctx),
        ]
        if "--no-root" not in " ".join(args):
            args.append("--no-root")
    return [
        render(
            "dockerfile/layers/poetry_project.j2",
            poetry_requirement=POETRY_REQUIREMENT,
            files=files,
            project_dir=dst,
            args=args,
        )
    ]


def _pixi(layer: PixiProject | PixiScript, ctx: _Layer) -> list[str]:
    from flyte._internal.imagebuild.utils import PIXI_PROJECT_DIR, PIXI_VERSION

    stage = ctx.stage("pixi")
    install_project = False
    if isinstance(layer, PixiScript):
        _existing_file(layer.script, "pixi script", ctx)
        manifest_name = "pixi.toml"
        ctx.context.add_bytes(f"{stage}/pixi.toml", layer.render_manifest().encode())
        files = [{"src": _j(f"{stage}/pixi.toml"), "dst": _j(f"{PIXI_PROJECT_DIR}/pixi.toml")}]
    else:
        manifest = _existing_file(layer.manifest, "pixi manifest", ctx)
        manifest_name = manifest.name
        install_project = layer.project_install_mode == "install_project"
        if install_project:
            _copy_tree(manifest.parent, stage, ctx, keep=(manifest.name, "pixi.lock"))
            files = [{"src": _j(stage + "/"), "dst": _j(PIXI_PROJECT_DIR + "/")}]
        else:
            files = [
                _copy_file(manifest, f"{stage}/{manifest_name}", f"{PIXI_PROJECT_DIR}/{manifest_name}", ctx)
            ]
    lock = layer.pixi_lock
    if lock is not None and not install_project:
        lock_file = _existing_file(lock, "pixi.lock", ctx)
        files.append(_copy_file(lock_file, f"{stage}/pixi.lock", f"{PIXI_PROJECT_DIR}/pixi.lock", ctx))
    # --locked and --frozen are mutually exclusive in pixi; a user's --frozen wins.
    args = ["--locked"] if lock is not None and "--frozen" not in (layer.extra_args or "") else []
    if layer.extra_args:
        args.append(layer.extra_args)
    pixi_image = apply_mirrors(f"ghcr.io/prefix-dev/pixi:{PIXI_VERSION}", ctx.mirrors)
    return [
        render(
            "dockerfile/layers/pixi_project.j2",
            pixi_image=pixi_image,
            files=files,
            project_dir=PIXI_PROJECT_DIR,
            manifest_name=manifest_name,
            environment=layer.environment,
            env_dir=f"{PIXI_PROJECT_DIR}/.pixi/envs/{layer.environment}",
            args=args,
        )
    ]


def _commands(layer: Commands, ctx: _Layer) -> list[str]:
    commands = [
        {"exec_form": json.dumps(["/bin/sh", "-c", c]) if "\n" in c else None, "text": c.strip()}
        for c in layer.commands
        if c.strip()
    ]
    return [render("dockerfile/layers/commands.j2", commands=commands)] if commands else []


def _workdir(layer: WorkDir, ctx: _Layer) -> list[str]:
    if not layer.workdir.strip() or "\n" in layer.workdir:
        raise BuildError(f"image {ctx.image_name!r}: invalid workdir {layer.workdir!r}")
    return [render("dockerfile/layers/workdir.j2", workdir=layer.workdir.strip())]


def _env(layer: Env, ctx: _Layer) -> list[str]:
    pairs = []
    for key, value in layer.env_vars:
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise BuildError(f"image {ctx.image_name!r}: invalid environment variable name {key!r}")
        # Double quotes keep spaces; `$VAR` still expands, as in Flyte's own `ENV K=V` lines.
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        pairs.append((key, f'"{escaped}"'))
    return [render("dockerfile/layers/env.j2", env_vars=pairs)] if pairs else []


def _copy_config(layer: CopyConfig, ctx: _Layer) -> list[str]:
    src = Path(layer.src)
    if layer.path_type == 1:
        directory = _existing_dir(src, "source folder", ctx)
        stage = f"{ctx.stage('src')}/{directory.name or 'root'}"
        if not _copy_tree(directory, stage, ctx):
            return []
        return [render("dockerfile/layers/copy.j2", src=_j(stage + "/"), dst=_j(layer.dst or "."))]
    file = _existing_file(src, "source file", ctx)
    arc = ctx.context.add_file(f"{ctx.stage('src')}/{file.name}", file)
    # `dst` is documented as a destination *folder*: the trailing slash stops Docker writing a file named dst.
    dst = (layer.dst or ".").rstrip("/") + "/"
    return [render("dockerfile/layers/copy.j2", src=_j(arc), dst=_j(dst))]


def _docker_lines(layer: _DockerLines, ctx: _Layer) -> list[str]:
    return [render("dockerfile/layers/docker_lines.j2", lines=list(layer.lines))]


def _dockerignore(layer: DockerIgnore, ctx: _Layer) -> list[str]:
    # Its patterns were read up front (_ignore_patterns); it contributes no instruction of its own.
    return []


def _code_bundle(layer: CodeBundleLayer, ctx: _Layer, select_code: CodeSelector | None) -> str:
    if select_code is None:
        raise BuildError(f"image {ctx.image_name!r}: with_code_bundle() needs the project's file selection")
    code = CodeFiles(ctx.root_dir, select_code(layer.copy_style), layer.dst)
    return _code_block(code, ctx.context, ctx.stage("code"))


_HANDLERS: dict[type[Layer], Callable[..., list[str]]] = {
    AptPackages: _apt,
    PipPackages: _pip,
    Requirements: _requirements,
    PythonWheels: _wheels,
    UVProject: _uv_project,
    UVScript: _uv_script,
    PoetryProject: _poetry_project,
    PixiProject: _pixi,
    PixiScript: _pixi,
    Commands: _commands,
    WorkDir: _workdir,
    Env: _env,
    CopyConfig: _copy_config,
    _DockerLines: _docker_lines,
    DockerIgnore: _dockerignore,
    CodeBundleLayer: _dockerignore,  # dispatched to _code_bundle in _render_layer
}

# ---------------------------------------------------------------------------------------------- helpers


def _code_block(code: CodeFiles, context: BuildContext, stage: str) -> str:
    context.add_files(stage, code.root_dir, code.files)
    dst = code.dst.rstrip("/") + "/" if code.dst not in ("", ".") else "./"
    return render(
        "dockerfile/layers/code.j2", src=_j(stage + "/"), dst=_j(dst), sys_paths=code.sys_paths, code_dst=dst
    )


def _render_dockerfile_image(
    image: Image, *, root_dir: Path, mirrors: tuple[tuple[str, str], ...], code: CodeFiles | None, name: str
) -> RenderedImage:
    """`Image.from_dockerfile`: the user's Dockerfile, FROM lines mirrored, its directory as the context."""
    from flyte._internal.imagebuild.docker import PatternMatcher

    dockerfile_path = Path(image.dockerfile or "")
    if not dockerfile_path.is_file():
        raise BuildError(f"image {name!r}: Dockerfile {dockerfile_path} does not exist")
    text = _mirror_from_lines(dockerfile_path.read_text(encoding="utf-8"), mirrors)
    context = BuildContext()
    context_dir = dockerfile_path.parent
    ignore_file = context_dir / ".dockerignore"
    patterns = _read_ignore(ignore_file) if ignore_file.is_file() else []
    matcher = PatternMatcher(patterns)
    files = [rel for rel in matcher.walk(str(context_dir)) if (context_dir / rel).is_file()]
    context.add_files(".", context_dir, sorted(Path(f).as_posix() for f in files))
    if code is not None and code.files:
        text = text.rstrip("\n") + "\n\n" + _code_block(code, context, ".flyte-deploy/code")
    context.add_bytes(DOCKERFILE, text.encode())
    return RenderedImage(dockerfile=text, context=context, base=None)


def _mirror_from_lines(text: str, mirrors: tuple[tuple[str, str], ...]) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        words = line.split()
        if words and words[0].upper() == "FROM":
            refs = [i for i, w in enumerate(words[1:], start=1) if not w.startswith("--")]
            if refs:
                words[refs[0]] = apply_mirrors(words[refs[0]], mirrors)
                line = " ".join(words) + "\n"
        out.append(line)
    return "".join(out)


def _resolve_code_bundle_layers(layers: tuple[Layer, ...], copy_style: str) -> tuple[Layer, ...]:
    # Flyte's own rule: with_code_bundle() only bakes code in when the deploy ships no bundle.
    if copy_style == "none":
        return layers
    return tuple(layer for layer in layers if not isinstance(layer, CodeBundleLayer))


def _ignore_patterns(layers: tuple[Layer, ...], root_dir: Path) -> list[str]:
    from flyte._code_bundle._ignore import STANDARD_IGNORE_PATTERNS

    explicit = [
        Path(layer.path) for layer in layers if isinstance(layer, DockerIgnore) and layer.path.strip()
    ]
    if explicit:
        path = explicit[-1]
        if not path.is_file():
            raise BuildError(f"with_dockerignore(): {path} does not exist")
        return [*STANDARD_IGNORE_PATTERNS, *_read_ignore(path)]
    fallback = root_dir / ".dockerignore"
    return [*STANDARD_IGNORE_PATTERNS, *(_read_ignore(fallback) if fallback.is_file() else [])]


def _read_ignore(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _copy_tree(src: Path, stage: str, ctx: _Layer, keep: tuple[str, ...] = ()) -> list[str]:
    from flyte._internal.imagebuild.docker import PatternMatcher

    matcher = PatternMatcher(ctx.ignore_patterns)
    files = {Path(rel).as_posix() for rel in matcher.walk(str(src)) if (src / rel).is_file()}
    # A project's own manifest and lock must survive any ignore pattern.
    files |= {name for name in keep if (src / name).is_file()}
    return list(ctx.context.add_files(stage, src, sorted(files)))


def _copy_file(src: Path, arc: str, dst: str, ctx: _Layer) -> dict[str, str]:
    ctx.context.add_file(arc, src)
    return {"src": _j(arc), "dst": _j(dst)}


def _existing_file(path: Path | None, what: str, ctx: _Layer) -> Path:
    resolved = _resolve(path, ctx)
    if not resolved.is_file():
        raise BuildError(f"image {ctx.image_name!r}: {what} {resolved} does not exist or is not a file")
    return resolved


def _existing_dir(path: Path | None, what: str, ctx: _Layer) -> Path:
    resolved = _resolve(path, ctx)
    if not resolved.is_dir():
        raise BuildError(f"image {ctx.image_name!r}: {what} {resolved} does not exist or is not a directory")
    return resolved


def _resolve(path: Path | None, ctx: _Layer) -> Path:
    # Relative layer paths are relative to where `flyte deploy` runs: root_dir, for us.
    p = Path(path or "")
    return p if p.is_absolute() else ctx.root_dir / p


def _refuse_secret_mounts(layer: Layer, image_name: str) -> None:
    if getattr(layer, "secret_mounts", None):
        raise BuildError(
            f"image {image_name!r}: {type(layer).__name__} layer uses secret_mounts, which need BuildKit "
            "(RUN --mount=type=secret); the Docker engine API builder has no secret mounts"
        )


def _j(value: str) -> str:
    return json.dumps(value)

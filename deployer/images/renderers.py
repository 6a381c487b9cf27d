"""One renderer per `flyte.Image` layer type: the Dockerfile blocks a layer becomes, and the files it
puts into the build context. `deployer.images.layers` maps each layer type to its renderer.

Every renderer writes two dialects from the same context:
- classic (the engine API's builder): files a step needs are COPY'd into a staging directory first,
  Python packages install with pip, and secret mounts are refused;
- BuildKit (as Flyte's own builder): files are bind-mounted from the context, package managers keep
  their caches in cache mounts, Python packages install with uv, and secrets are mounted for the one
  step that needs them (never written into a layer).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.errors import BuildError
from deployer.images.context import BuildContext
from deployer.images.sources import SourcePolicy, check_destination
from deployer.images.tags import apply_mirrors
from deployer.images.uvproject import uv_layout
from deployer.sdk import (
    AptPackages,
    CodeBundleLayer,
    Commands,
    CopyConfig,
    DockerIgnore,
    Env,
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
    ignored_walk,
)
from deployer.sdk import (
    DockerLines as _DockerLines,
)
from deployer.templating import render

UV_VERSION = "0.13.8"
POETRY_REQUIREMENT = "poetry>=2,<3"
STAGING = "/opt/flyte-deploy/layers"
POETRY_TRUST = (
    'export REQUESTS_CA_BUNDLE="${REQUESTS_CA_BUNDLE:-$("$VIRTUAL_ENV/bin/python" -c '
    "'import ssl; print(ssl.get_default_verify_paths().openssl_cafile)')}\""
)

CodeSelector = Callable[[str], tuple[str, ...]]
"""copy style (`loaded_modules`/`all`) → files relative to root_dir: the bundle's file selection."""


@dataclass(frozen=True)
class BuildSecret:
    """A secret one BuildKit step mounts, and where the build finds its value on this machine."""

    id: str
    env_var: str
    """Read from this environment variable of the deploying process, when set..."""
    file: str
    """...else from this file (Flyte's convention: `/etc/secrets/<group>_<key>`)."""


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


@dataclass
class LayerContext:
    """What a renderer sees: the layer's position, the shared build context, and the dialect."""

    index: int
    image_name: str
    context: BuildContext
    root_dir: Path
    ignore_patterns: list[str]
    mirrors: tuple[tuple[str, str], ...]
    policy: SourcePolicy
    buildkit: bool = False
    select_code: CodeSelector | None = None
    emitted: set[str] = field(default_factory=set)
    """Names of once-per-image blocks already emitted (e.g. the uv bootstrap)."""
    secrets: dict[str, BuildSecret] = field(default_factory=dict)

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

    def cache(self, target: str, name: str) -> str:
        return (
            f"--mount=type=cache,target={target},id=flyte-deploy-{name},sharing=locked"
            if self.buildkit
            else ""
        )

    def bind(self, source: str, target: str, *, rw: bool = False) -> str:
        return f"--mount=type=bind,source={source},target={target}{',rw' if rw else ''}"

    def secret_mounts(self, layer: Layer) -> tuple[str, str]:
        """(`--mount=type=secret` flags, a shell prefix exporting env-style secrets) for `layer`."""
        secrets = getattr(layer, "secret_mounts", None) or ()
        if not secrets:
            return "", ""
        if not self.buildkit:
            raise BuildError(
                f"image {self.image_name!r}: {type(layer).__name__} layer uses secret_mounts, which need "
                "BuildKit (RUN --mount=type=secret); the Docker engine API builder has no secret mounts"
            )
        from flyte import Secret

        mounts, exports = [], []
        for item in secrets:
            secret = Secret(key=item) if isinstance(item, str) else item
            name = "_".join(filter(None, (secret.group, secret.key)))
            secret_id = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            self.secrets[secret_id] = BuildSecret(
                secret_id, name.upper().replace("-", "_"), f"/etc/secrets/{name}"
            )
            if secret.mount:
                mounts.append(f"--mount=type=secret,id={secret_id},target={secret.mount},required=true")
                continue
            target = f"/run/secrets/{secret_id}"
            mounts.append(f"--mount=type=secret,id={secret_id},target={target},required=true")
            # A file mount, exported for the step: env-style secret mounts need a newer Dockerfile
            # frontend than many engines ship.
            exports.append(f'export {secret.as_env_var or name}="$(cat {target})"')
        return " ".join(mounts), "".join(f"{e} && " for e in exports)

    def check_source(self, path: Path, what: str) -> Path:
        return self.policy.check(path, what, self.image_name)


Renderer = Callable[[Any, LayerContext], list[str]]


# ---------------------------------------------------------------------------------------------- system


def apt(layer: AptPackages, ctx: LayerContext) -> list[str]:
    mounts, prefix = ctx.secret_mounts(layer)
    packages = [shlex.quote(p) for p in layer.packages]
    if not ctx.buildkit:
        return [render("dockerfile/layers/apt.j2", packages=packages)]
    caches = " ".join((ctx.cache("/var/cache/apt", "apt-cache"), ctx.cache("/var/lib/apt", "apt-lists")))
    return [
        render("dockerfile/buildkit/apt.j2", packages=packages, mounts=f"{caches} {mounts}", prefix=prefix)
    ]


# ---------------------------------------------------------------------------------------------- python


def pip_args(layer: PipOption, *, uv: bool = False) -> list[str]:
    args: list[str] = []
    if layer.index_url:
        args += ["--index-url", shlex.quote(layer.index_url)]
    for url in layer.extra_index_urls or ():
        args += ["--extra-index-url", shlex.quote(url)]
    if layer.pre:
        args.append("--prerelease=allow" if uv else "--pre")
    if layer.extra_args:
        args.append(layer.extra_args)
    return args


def _uv_bootstrap(ctx: LayerContext) -> list[str]:
    return ctx.once("uv", render("dockerfile/layers/uv_bootstrap.j2", uv_version=UV_VERSION))


def _uv_pip(ctx: LayerContext, layer: Layer, args: list[str], binds: list[str]) -> list[str]:
    mounts, prefix = ctx.secret_mounts(layer)
    all_mounts = " ".join(m for m in (ctx.cache("/root/.cache/uv", "uv"), *binds, mounts) if m)
    block = render("dockerfile/buildkit/uv_pip.j2", mounts=all_mounts, prefix=prefix, args=args)
    return [*_uv_bootstrap(ctx), block]


def pip(layer: PipPackages, ctx: LayerContext) -> list[str]:
    packages = [shlex.quote(p) for p in layer.packages or ()]
    if not packages:
        return []
    if ctx.buildkit:
        return _uv_pip(ctx, layer, [*pip_args(layer, uv=True), *packages], [])
    ctx.secret_mounts(layer)
    return [render("dockerfile/layers/pip.j2", args=[*pip_args(layer), *packages], requirements=None)]


def requirements(layer: Requirements, ctx: LayerContext) -> list[str]:
    src = _existing_file(layer.file, "requirements file", ctx)
    arc = ctx.context.add_file(f"{ctx.stage('requirements')}/{src.name}", src)
    dst = f"{ctx.staging}/{src.name}"
    packages = [shlex.quote(p) for p in layer.packages or ()]
    if ctx.buildkit:
        args = [*pip_args(layer, uv=True), *packages, "--requirement", dst]
        return _uv_pip(ctx, layer, args, [ctx.bind(arc, dst)])
    ctx.secret_mounts(layer)
    args = [*pip_args(layer), *packages, "--requirement", dst]
    return [render("dockerfile/layers/pip.j2", args=args, requirements={"src": _j(arc), "dst": _j(dst)})]


def wheels(layer: PythonWheels, ctx: LayerContext) -> list[str]:
    wheel_dir = _existing_dir(layer.wheel_dir, "wheel directory", ctx)
    names = sorted(p.name for p in wheel_dir.glob("*.whl") if p.is_file())
    if not names:
        raise BuildError(f"image {ctx.image_name!r}: wheel directory {wheel_dir} holds no .whl files")
    stage = ctx.stage("wheels")
    ctx.context.add_files(stage, wheel_dir, names)
    dst = f"{ctx.staging}/wheels"
    package = shlex.quote(layer.package_name)
    if ctx.buildkit:
        # Dependencies from the index (the local wheel only as a find-link), then the exact local wheel.
        find = [*pip_args(layer, uv=True), "--find-links", dst]
        bind = [ctx.bind(stage, dst)]
        return [
            *_uv_pip(ctx, layer, [*find, package], bind),
            *_uv_pip(ctx, layer, [*find, "--no-deps", "--no-index", "--reinstall", package], bind),
        ]
    ctx.secret_mounts(layer)
    return [
        render(
            "dockerfile/layers/wheels.j2",
            src=_j(stage + "/"),
            dst=dst,
            dst_json=_j(dst + "/"),
            args=pip_args(layer),
            package=package,
        )
    ]


def uv_project(layer: UVProject, ctx: LayerContext) -> list[str]:
    pyproject = _existing_file(layer.pyproject, "pyproject.toml", ctx)
    lock_given = _existing_file(layer.uvlock, "uv.lock", ctx) if layer.uvlock is not None else None
    layout = uv_layout(
        pyproject, lock_given, limit=ctx.root_dir if not ctx.policy.allow_outside else Path("/")
    )
    for package in layout.packages:
        ctx.check_source(package, "uv path dependency")
    install_project = layer.project_install_mode == "install_project"
    args = [a for a in pip_args(layer, uv=ctx.buildkit) if a != "--no-install-project"]
    stage, dst = ctx.stage("uv"), f"{ctx.staging}/project"
    blocks = _uv_bootstrap(ctx)
    if layout.simple:
        lock = layout.lock
        if install_project:
            _copy_tree(layout.project, stage, ctx, keep=("pyproject.toml", "uv.lock"))
            if lock is not None and f"{stage}/uv.lock" not in ctx.context:
                ctx.context.add_file(f"{stage}/uv.lock", lock)
            files = [{"src": _j(stage + "/"), "dst": _j(dst + "/")}]
        else:
            files = [_copy_file(pyproject, f"{stage}/pyproject.toml", f"{dst}/pyproject.toml", ctx)]
            if lock is not None:
                files.append(_copy_file(lock, f"{stage}/uv.lock", f"{dst}/uv.lock", ctx))
        project_dir = dst
    else:
        # Workspace members and path dependencies sit where they sit on the host, relative to one
        # another, so every relative `path = ...` and workspace glob resolves in the image too.
        anchor = layout.anchor

        def place(path: Path) -> str:
            rel = path.relative_to(anchor).as_posix()
            return stage if rel == "." else f"{stage}/{rel}"

        for package in layout.packages:
            if package.is_dir():
                _copy_tree(package, place(package), ctx, keep=("pyproject.toml",))
            else:
                ctx.context.add_file(place(package), package)
        ctx.context.add_file(f"{place(layout.root)}/pyproject.toml", layout.root / "pyproject.toml")
        if install_project:
            _copy_tree(layout.project, place(layout.project), ctx, keep=("pyproject.toml",))
        else:
            ctx.context.add_file(f"{place(layout.project)}/pyproject.toml", pyproject)
        if layout.lock is not None:
            ctx.context.add_file(f"{place(layout.root)}/uv.lock", layout.lock)
        files = [{"src": _j(stage + "/"), "dst": _j(dst + "/")}]
        rel = layout.project.relative_to(anchor).as_posix()
        project_dir = dst if rel == "." else f"{dst}/{rel}"
        # Local packages are installed from their copies, not linked to a folder that the step drops.
        args = ["--no-editable", *args] if not install_project else args
    mounts, prefix = ctx.secret_mounts(layer)
    if ctx.buildkit:
        binds = ctx.bind(stage, dst, rw=True)
        all_mounts = " ".join(m for m in (ctx.cache("/root/.cache/uv", "uv"), binds, mounts) if m)
        block = render(
            "dockerfile/buildkit/uv_project.j2",
            mounts=all_mounts,
            prefix=prefix,
            install_project=install_project,
            project_dir=project_dir,
            args=args,
        )
        return [*blocks, block]
    project = render(
        "dockerfile/layers/uv_project.j2",
        files=files,
        install_project=install_project,
        project_dir=project_dir,
        args=args,
    )
    return [*blocks, project]


def uv_script(layer: UVScript, ctx: LayerContext) -> list[str]:
    from deployer.sdk import uv_script_header as parse_uv_script_file

    script = _existing_file(layer.script, "uv script", ctx)
    try:
        header = parse_uv_script_file(script)
    except ValueError as exc:
        raise BuildError(f"image {ctx.image_name!r}: uv script {script}: {exc}") from exc
    blocks: list[str] = []
    if header.dependencies:
        packages = tuple(header.dependencies)
        as_pip = PipPackages(
            packages=packages,
            index_url=layer.index_url,
            extra_index_urls=layer.extra_index_urls,
            pre=layer.pre,
            extra_args=layer.extra_args,
            secret_mounts=layer.secret_mounts,
        )
        blocks += pip(as_pip, ctx)
    for number, project in enumerate(header.pyprojects or ()):
        project_dir = (script.parent / project).resolve()
        uvlock = project_dir / "uv.lock"
        sub = replace(ctx, index=ctx.index * 100 + number)
        blocks += uv_project(
            UVProject(
                pyproject=project_dir / "pyproject.toml",
                uvlock=uvlock if uvlock.exists() else None,
                project_install_mode="install_project",
                pre=layer.pre,
                extra_args=layer.extra_args,
                secret_mounts=layer.secret_mounts,
            ),
            sub,
        )
        ctx.emitted |= sub.emitted
        ctx.secrets.update(sub.secrets)
    return blocks


def poetry_project(layer: PoetryProject, ctx: LayerContext) -> list[str]:
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
    mounts, prefix = ctx.secret_mounts(layer)
    blocks: list[str] = []
    if ctx.buildkit:
        blocks += _uv_pip(
            ctx, PipPackages(packages=(POETRY_REQUIREMENT,)), [shlex.quote(POETRY_REQUIREMENT)], []
        )
        install = blocks.pop()
        mounts = " ".join(m for m in (ctx.cache("/root/.cache/pypoetry", "poetry"), mounts) if m)
        # poetry verifies TLS with certifi's bundle; trust the image's CA store, as pip and uv do here.
        prefix = f"{POETRY_TRUST} && {prefix}"
    else:
        install = f'RUN "$VIRTUAL_ENV/bin/python" -m pip install "{POETRY_REQUIREMENT}"'
    # The project is copied (not bind-mounted): poetry installs the root package as a link to it.
    return [
        *blocks,
        render(
            "dockerfile/layers/poetry_project.j2",
            install_poetry=install,
            files=files,
            project_dir=dst,
            args=args,
            mounts=mounts,
            prefix=prefix,
        ),
    ]


def pixi(layer: PixiProject | PixiScript, ctx: LayerContext) -> list[str]:
    from deployer.sdk import pixi_defaults

    PIXI_PROJECT_DIR, PIXI_VERSION = pixi_defaults()

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
    mounts, prefix = ctx.secret_mounts(layer)
    all_mounts = " ".join(m for m in (ctx.cache("/root/.cache/rattler", "pixi"), mounts) if m)
    return [
        render(
            "dockerfile/layers/pixi_project.j2",
            pixi_image=apply_mirrors(f"ghcr.io/prefix-dev/pixi:{PIXI_VERSION}", ctx.mirrors),
            files=files,
            project_dir=PIXI_PROJECT_DIR,
            manifest_name=manifest_name,
            environment=layer.environment,
            env_dir=f"{PIXI_PROJECT_DIR}/.pixi/envs/{layer.environment}",
            args=args,
            mounts=all_mounts,
            prefix=prefix,
        )
    ]


# ---------------------------------------------------------------------------------------------- barriers


def commands(layer: Commands, ctx: LayerContext) -> list[str]:
    mounts, prefix = ctx.secret_mounts(layer)
    rendered = [
        {
            "exec_form": json.dumps(["/bin/sh", "-c", prefix + c]) if "\n" in c else None,
            "text": prefix + c.strip(),
        }
        for c in layer.commands
        if c.strip()
    ]
    return [render("dockerfile/layers/commands.j2", commands=rendered, mounts=mounts)] if rendered else []


def workdir(layer: WorkDir, ctx: LayerContext) -> list[str]:
    if not layer.workdir.strip() or "\n" in layer.workdir:
        raise BuildError(f"image {ctx.image_name!r}: invalid workdir {layer.workdir!r}")
    return [render("dockerfile/layers/workdir.j2", workdir=layer.workdir.strip())]


def env(layer: Env, ctx: LayerContext) -> list[str]:
    pairs = []
    for key, value in layer.env_vars:
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise BuildError(f"image {ctx.image_name!r}: invalid environment variable name {key!r}")
        # Double quotes keep spaces; `$VAR` still expands, as in Flyte's own `ENV K=V` lines.
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        pairs.append((key, f'"{escaped}"'))
    return [render("dockerfile/layers/env.j2", env_vars=pairs)] if pairs else []


def docker_lines(layer: _DockerLines, ctx: LayerContext) -> list[str]:
    return [render("dockerfile/layers/docker_lines.j2", lines=list(layer.lines))]


# ---------------------------------------------------------------------------------------------- code


def copy_config(layer: CopyConfig, ctx: LayerContext) -> list[str]:
    src = _resolve(Path(layer.src), ctx)
    dst = check_destination(layer.dst or ".", ctx.image_name)
    if layer.path_type == 1:
        if src.is_dir():
            ctx.check_source(src, "source folder")
        directory = _existing_dir(src, "source folder", ctx)
        stage = f"{ctx.stage('src')}/{directory.name or 'root'}"
        if not _copy_tree(directory, stage, ctx, what="source folder"):
            return []
        return [render("dockerfile/layers/copy.j2", src=_j(stage + "/"), dst=_j(dst))]
    file = _existing_file(src, "source file", ctx)
    arc = ctx.context.add_file(f"{ctx.stage('src')}/{file.name}", file)
    # `dst` is documented as a destination *folder*: the trailing slash stops Docker writing a file named dst.
    return [render("dockerfile/layers/copy.j2", src=_j(arc), dst=_j(dst.rstrip("/") + "/"))]


def dockerignore(layer: DockerIgnore, ctx: LayerContext) -> list[str]:
    # Its patterns are read up front (render.ignore_patterns); it contributes no instruction of its own.
    return []


def code_bundle(layer: CodeBundleLayer, ctx: LayerContext) -> list[str]:
    if ctx.select_code is None:
        raise BuildError(f"image {ctx.image_name!r}: with_code_bundle() needs the project's file selection")
    code = CodeFiles(
        ctx.root_dir, ctx.select_code(layer.copy_style), check_destination(layer.dst, ctx.image_name)
    )
    return [code_block(code, ctx.context, ctx.stage("code"))]


def code_block(code: CodeFiles, context: BuildContext, stage: str) -> str:
    context.add_files(stage, code.root_dir, code.files)
    dst = code.dst.rstrip("/") + "/" if code.dst not in ("", ".") else "./"
    return render(
        "dockerfile/layers/code.j2", src=_j(stage + "/"), dst=_j(dst), sys_paths=code.sys_paths, code_dst=dst
    )


# ---------------------------------------------------------------------------------------------- helpers


def _copy_tree(
    src: Path, stage: str, ctx: LayerContext, keep: tuple[str, ...] = (), what: str = "project folder"
) -> list[str]:
    ctx.check_source(src, what)
    walked = ctx.policy.walk(src, iter(ignored_walk(ctx.ignore_patterns, src)), what, ctx.image_name)
    files = {Path(rel).as_posix() for rel in walked if (src / rel).is_file()}
    # A project's own manifest and lock must survive any ignore pattern.
    files |= {name for name in keep if (src / name).is_file()}
    return list(ctx.context.add_files(stage, src, sorted(files)))


def _copy_file(src: Path, arc: str, dst: str, ctx: LayerContext) -> dict[str, str]:
    ctx.context.add_file(arc, src)
    return {"src": _j(arc), "dst": _j(dst)}


def _existing_file(path: Path | None, what: str, ctx: LayerContext) -> Path:
    resolved = _resolve(path, ctx)
    if not resolved.is_file():
        raise BuildError(f"image {ctx.image_name!r}: {what} {resolved} does not exist or is not a file")
    ctx.check_source(resolved, what)
    return resolved


def _existing_dir(path: Path | None, what: str, ctx: LayerContext) -> Path:
    resolved = _resolve(path, ctx)
    if resolved.is_dir():
        ctx.check_source(resolved, what)
        return resolved
    raise BuildError(f"image {ctx.image_name!r}: {what} {resolved} does not exist or is not a directory")


def _resolve(path: Path | None, ctx: LayerContext) -> Path:
    # Relative layer paths are relative to where `flyte deploy` runs: root_dir, for us.
    p = Path(path or "")
    return p if p.is_absolute() else ctx.root_dir / p


def _j(value: str) -> str:
    return json.dumps(value)

"""`flyte.Image` → Dockerfiles + a deterministic build context, through `templates/dockerfile/`.

Each image is rendered in both dialects (see `renderers`): the classic one for the engine API's
builder and the BuildKit one, both into one context, so an image's identity (the hash of that
context) is the same whichever builder a machine has. The code of a container-mode image is the
last layer; the image without it (`dependencies`) is rendered too, because the pipeline builds only
that on an engine and appends the code in the registry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from flyte import Image

from deployer.errors import BuildError
from deployer.images import layers as layer_kinds
from deployer.images.context import BuildContext
from deployer.images.renderers import BuildSecret, CodeFiles, CodeSelector, LayerContext, code_block
from deployer.images.sources import SourcePolicy
from deployer.images.tags import apply_mirrors, identity_tag
from deployer.sdk import CodeBundleLayer, DockerIgnore, Layer, ignored_walk, standard_ignore_patterns
from deployer.templating import render

__all__ = ["CodeFiles", "CodeSelector", "RenderedImage", "render_image"]

DOCKERFILE = ".flyte-deploy/Dockerfile"
DOCKERFILE_BUILDKIT = ".flyte-deploy/Dockerfile.buildkit"


@dataclass(frozen=True, eq=False)
class RenderedImage:
    dockerfile: str | None
    """For the engine API's classic builder; None when the image needs BuildKit (secret mounts)."""
    buildkit_dockerfile: str
    context: BuildContext
    """Both Dockerfiles and every file the image copies, the code included."""
    base: str | None = None
    """The FROM reference after mirror rewrites (None for a user Dockerfile)."""
    code: CodeFiles | None = None
    """The code layer (container mode), the last one."""
    dependencies: RenderedImage | None = None
    """This image without `code` (None when there is no code layer)."""
    secrets: tuple[BuildSecret, ...] = ()
    builds_nothing: bool = False
    """No layer but the code: the dependency image is the base image itself."""
    dockerfile_path: str = DOCKERFILE
    buildkit_dockerfile_path: str = DOCKERFILE_BUILDKIT
    identity: str = field(init=False)
    """`build-<hash>`: a hash of the context tarball, which holds the Dockerfiles and every copied byte."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", identity_tag(self.context.sha256()))

    @property
    def dependency_image(self) -> RenderedImage:
        """What an engine builds: the image without its code layer (itself when it has none)."""
        return self.dependencies or self


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
    buildkit: bool = False,
    policy: SourcePolicy | None = None,
) -> RenderedImage:
    """Render `image` (layers on top of `base`) plus, when given, `code` as the last layer.

    `base` is the FROM reference before mirrors: the image's own base, or the URI a ref name maps to.
    `image=None` means "just `base`" (a plain URI or `auto`), which only needs building for `code`.
    `buildkit`: the builder offers BuildKit, so an image that only BuildKit can build is no error.
    """
    policy = policy or SourcePolicy(root_dir)
    code = code if code is not None and code.files else None
    if image is not None and image.dockerfile is not None:
        return _render_dockerfile_image(
            image, root_dir=root_dir, mirrors=mirrors, code=code, name=name, policy=policy
        )
    if not base:
        raise BuildError(f"image {name!r} has no base image to build on")
    layers = _resolve_code_bundle_layers(image._layers if image else (), copy_style)
    # Both dialects render the same layers: the project's files are selected once.
    select_code = functools.cache(select_code) if select_code is not None else None
    context = BuildContext()
    ignore = _ignore_patterns(layers, root_dir)

    def dialect(buildkit_dialect: bool) -> LayerContext:
        return LayerContext(
            0,
            name,
            context,
            root_dir,
            ignore,
            mirrors,
            policy,
            buildkit=buildkit_dialect,
            select_code=select_code,
        )

    bk = dialect(True)
    bk_blocks = _blocks(layers, bk)
    classic_blocks: list[str] | None
    try:
        classic_blocks = _blocks(layers, dialect(False))
    except BuildError:
        # Only BuildKit mounts secrets: without it, that refusal is the answer.
        if not (bk.secrets and buildkit):
            raise
        classic_blocks = None
    mirrored = apply_mirrors(base, mirrors)

    def dockerfile(blocks: list[str] | None, with_code: bool) -> str | None:
        if blocks is None:
            return None
        if with_code and code is not None:
            blocks = [*blocks, code_block(code, context, "code")]
        return render("dockerfile/Dockerfile.j2", base=mirrored, blocks=[b for b in blocks if b.strip()])

    secrets = tuple(bk.secrets[k] for k in sorted(bk.secrets))
    nothing = not any(b.strip() for b in bk_blocks)
    dependencies = None
    if code is not None:
        deps_context = BuildContext().merged(context)
        _add_dockerfiles(deps_context, dockerfile(classic_blocks, False), dockerfile(bk_blocks, False) or "")
        deps_classic, deps_buildkit = dockerfile(classic_blocks, False), dockerfile(bk_blocks, False) or ""
        dependencies = RenderedImage(
            dockerfile=deps_classic,
            buildkit_dockerfile=deps_buildkit,
            context=deps_context,
            base=mirrored,
            secrets=secrets,
            builds_nothing=nothing,
            buildkit_dockerfile_path=_buildkit_path(deps_classic, deps_buildkit),
        )
    classic, buildkit_text = dockerfile(classic_blocks, True), dockerfile(bk_blocks, True) or ""
    _add_dockerfiles(context, classic, buildkit_text)
    return RenderedImage(
        dockerfile=classic,
        buildkit_dockerfile=buildkit_text,
        context=context,
        base=mirrored,
        code=code,
        dependencies=dependencies,
        secrets=secrets,
        builds_nothing=nothing and code is None,
        buildkit_dockerfile_path=_buildkit_path(classic, buildkit_text),
    )


def _blocks(layers: tuple[Layer, ...], ctx: LayerContext) -> list[str]:
    blocks: list[str] = []
    for index, layer in enumerate(layer_kinds.ordered(layers), start=1):
        ctx.index = index
        if layer_kinds.is_python(layer):
            blocks += ctx.once("python", render("dockerfile/layers/python_env.j2"))
        blocks.extend(layer_kinds.render_layer(layer, ctx))
    return blocks


def _buildkit_path(classic: str | None, buildkit: str) -> str:
    return DOCKERFILE if buildkit == classic else DOCKERFILE_BUILDKIT


def _add_dockerfiles(context: BuildContext, classic: str | None, buildkit: str) -> None:
    if classic is not None:
        context.add_bytes(DOCKERFILE, classic.encode())
    if buildkit != classic:
        context.add_bytes(DOCKERFILE_BUILDKIT, buildkit.encode())


def _render_dockerfile_image(
    image: Image,
    *,
    root_dir: Path,
    mirrors: tuple[tuple[str, str], ...],
    code: CodeFiles | None,
    name: str,
    policy: SourcePolicy,
) -> RenderedImage:
    """`Image.from_dockerfile`: the user's Dockerfile, FROM lines mirrored, its directory as the context."""
    dockerfile_path = Path(image.dockerfile or "")
    if not dockerfile_path.is_absolute():
        dockerfile_path = root_dir / dockerfile_path
    if not dockerfile_path.is_file():
        raise BuildError(f"image {name!r}: Dockerfile {dockerfile_path} does not exist")
    context_dir = policy.check(dockerfile_path.parent, "Dockerfile folder", name)
    text = _mirror_from_lines(dockerfile_path.read_text(encoding="utf-8"), mirrors)
    context = BuildContext()
    ignore_file = context_dir / ".dockerignore"
    patterns = _read_ignore(ignore_file) if ignore_file.is_file() else []
    walked = policy.walk(
        context_dir, iter(ignored_walk(patterns, context_dir)), "Dockerfile context file", name
    )
    files = [rel for rel in walked if (context_dir / rel).is_file()]
    context.add_files(".", context_dir, sorted(Path(f).as_posix() for f in files))
    dependencies = None
    if code is not None:
        deps_context = BuildContext().merged(context)
        deps_context.add_bytes(DOCKERFILE, text.encode())
        dependencies = RenderedImage(
            dockerfile=text,
            buildkit_dockerfile=text,
            context=deps_context,
            buildkit_dockerfile_path=DOCKERFILE,
        )
        text = text.rstrip("\n") + "\n\n" + code_block(code, context, ".flyte-deploy/code")
    context.add_bytes(DOCKERFILE, text.encode())
    return RenderedImage(
        dockerfile=text,
        buildkit_dockerfile=text,
        context=context,
        buildkit_dockerfile_path=DOCKERFILE,
        code=code,
        dependencies=dependencies,
    )


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
    explicit = [
        Path(layer.path) for layer in layers if isinstance(layer, DockerIgnore) and layer.path.strip()
    ]
    if explicit:
        path = explicit[-1]
        if not path.is_file():
            raise BuildError(f"with_dockerignore(): {path} does not exist")
        return [*standard_ignore_patterns(), *_read_ignore(path)]
    fallback = root_dir / ".dockerignore"
    return [*standard_ignore_patterns(), *(_read_ignore(fallback) if fallback.is_file() else [])]


def _read_ignore(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]

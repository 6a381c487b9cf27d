"""What a deploy would do, computed without building, pushing or uploading anything.

`plan_request` is the first half of every command's pipeline: git context → version → discovery →
dependency graph → plan. The plan's JSON is a pure function of the commit and the flags: paths in it
are relative (`root_dir` to the repository top, `source_file` to root_dir), so two clones agree.
"""

from __future__ import annotations

from pathlib import Path

from deployer.bundle import bundle_spec, env_includes
from deployer.discovery import discover
from deployer.errors import PlanError, UsageError
from deployer.gitctx import GitContext, read_git_context
from deployer.graph import resolve
from deployer.images.spec import ImageMap, image_spec, parse_image_map
from deployer.images.tags import apply_mirrors, parse_mirrors
from deployer.models import (
    CopyStyle,
    DeployMode,
    DeployRequest,
    DiscoveredEnv,
    EnvGraph,
    ImageSpec,
    Mode,
    Model,
    Plan,
    PlannedEnv,
    VersionInfo,
)
from deployer.versioning import version_info


class PlanResult(Model):
    """Everything the later stages need from the first half of the pipeline."""

    plan: Plan
    graph: EnvGraph
    """Holds the live environment objects and the absolute root_dir."""
    git: GitContext
    version: VersionInfo


def plan_request(request: DeployRequest) -> PlanResult:
    """Read git, discover, resolve and plan. Probes Docker only for `--mode auto`."""
    if not Path(request.root_dir).is_dir():
        raise UsageError(f"--root-dir {request.root_dir}: not a directory")
    git = read_git_context(request.root_dir, sha=request.sha)
    version = version_info(git, override=request.version)
    graph = resolve(discover(request))
    docker_available = docker_answers() if request.mode is Mode.auto else False
    plan = make_plan(request, git, version, graph, docker_available=docker_available)
    return PlanResult(plan=plan, graph=graph, git=git, version=version)


def docker_answers() -> bool:
    """Whether a Docker engine (DOCKER_HOST or the default socket) answers a ping within 3 s."""
    import docker

    try:
        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def make_plan(
    request: DeployRequest,
    git: GitContext,
    version: VersionInfo,
    graph: EnvGraph,
    *,
    docker_available: bool,
) -> Plan:
    style = request.copy_style.resolved()
    if style is CopyStyle.none and request.mode is Mode.bundle:
        raise PlanError("--mode bundle needs a code bundle, but --copy-style is none")
    image_map = parse_image_map(request.images)
    mirrors = parse_mirrors(request.base_image_mirrors)
    root_dir = Path(graph.root_dir)
    planned: list[PlannedEnv] = []
    for node in graph.environments:
        spec = image_spec(node.env, image_map, copy_style=style.value)
        mode, reason = _mode(spec, request, style, docker_available)
        if mode == "container" and style is not CopyStyle.none:
            # The code is baked in: whatever the spec says, the image deployed is a new build.
            spec = spec.model_copy(update={"uri": None, "needs_build": True})
        elif spec.uri is not None:
            spec = spec.model_copy(update={"uri": apply_mirrors(spec.uri, mirrors)})
        planned.append(
            PlannedEnv(
                name=node.name,
                depends_on=tuple(sorted({d.name for d in node.env.depends_on})),
                tasks=tuple(sorted(node.env.tasks)),
                image=spec,
                mode=mode,
                mode_reason=reason,
                source_file=_relative(node.file, root_dir),
            )
        )
    includes = env_includes(node.env for node in graph.environments)
    bundle = bundle_spec(root_dir, style, graph.loaded_files, includes)
    return Plan(
        version=version.version,
        git=git.info(),
        image_tags=version.image_tags,
        release=version.release,
        project=request.project,
        domain=request.domain,
        root_dir=_relative(root_dir, git.root) or Path("."),
        environments=tuple(planned),
        bundle=bundle,
        image_args=_image_args(graph.environments, planned, image_map, mirrors),
        copy_style=style,
        registry=request.registry,
        warnings=(*version.warnings, *graph.warnings),
    )


def _mode(
    spec: ImageSpec, request: DeployRequest, style: CopyStyle, docker_available: bool
) -> tuple[DeployMode, str]:
    if style is CopyStyle.none:
        if spec.needs_build:
            return "container", "--copy-style none: no bundle; the image is built from its spec"
        return "container", f"--copy-style none: no bundle; {spec.uri} runs as-is and must hold the code"
    if spec.external:
        return "bundle", f"{spec.uri} is deployed as-is: the code ships in the bundle"
    if request.mode is Mode.bundle:
        return "bundle", "--mode bundle"
    if request.mode is Mode.container:
        return "container", "--mode container"
    if docker_available:
        return "container", "a Docker engine answered: the code is built into the image"
    return "bundle", "no Docker engine answered: the code ships in the bundle"


def _relative(path: Path, base: Path) -> Path | None:
    return Path(path.relative_to(base).as_posix()) if path.is_relative_to(base) else None


def _image_args(
    nodes: tuple[DiscoveredEnv, ...],
    planned: list[PlannedEnv],
    image_map: ImageMap,
    mirrors: tuple[tuple[str, str], ...],
) -> tuple[str, ...]:
    """`--image` arguments that make `flyte deploy` resolve the same images as this plan."""
    named: dict[str, str] = {}
    default: str | None = None
    for node, env in zip(nodes, planned, strict=True):
        if env.image.ref_name and env.image.ref_name in image_map.named:
            named[env.image.ref_name] = image_map.named[env.image.ref_name]
        elif image_map.default and (env.image.ref_name or node.env.image in (None, "auto")):
            # A bare default or `from_ref_name("default")`: both are flyte's bare `--image URI`.
            default = image_map.default
    args: list[str] = []
    for name, uri in sorted(named.items()):
        args += ["--image", f"{name}={apply_mirrors(uri, mirrors)}"]
    if default:
        args += ["--image", apply_mirrors(default, mirrors)]
    return tuple(args)

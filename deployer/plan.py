"""What a deploy would do, computed without building, pushing or uploading anything.

`plan_request` is the first half of every command's pipeline: git context → version → discovery →
dependency graph → plan. The plan's JSON is a pure function of the commit and the flags: paths in it
are relative (`root_dir` to the repository top, `source_file` to root_dir), so two clones agree.
"""

from __future__ import annotations

import atexit
import contextlib
from pathlib import Path

from deployer.apps import app_mode, planned_app
from deployer.bundle import bundle_spec, env_includes
from deployer.discovery import FlyteScope, discover, is_app
from deployer.errors import PlanError, UsageError
from deployer.gitctx import GitContext, commit_tree, read_git_context
from deployer.graph import resolve
from deployer.images.spec import ImageMap, image_spec, parse_image_map
from deployer.images.tags import apply_mirrors, parse_mirrors
from deployer.models import (
    BuiltImage,
    CopyStyle,
    DeployMode,
    DiscoveredEnv,
    EnvGraph,
    ImageSpec,
    Mode,
    Model,
    Plan,
    PlannedEnv,
    TriggerPolicy,
    VersionInfo,
)
from deployer.request import DeployRequest
from deployer.settings import Settings
from deployer.triggers import planned_triggers
from deployer.versioning import version_info


class PlanResult(Model):
    """Everything the later stages need from the first half of the pipeline."""

    plan: Plan
    graph: EnvGraph
    """Holds the live environment objects and the absolute root_dir."""
    git: GitContext
    version: VersionInfo


class PlanSettings(Model):
    """The settings planning reads."""

    copy_style: CopyStyle = CopyStyle.loaded_modules
    mode: Mode = Mode.auto
    images: tuple[str, ...] = ()
    base_image_mirrors: tuple[str, ...] = ()
    project: str = "flytesnacks"
    domain: str = "development"
    registry: str | None = None
    trigger_policy: TriggerPolicy = TriggerPolicy.as_code
    app_suffix: str = ""

    @classmethod
    def of(cls, settings: Settings) -> PlanSettings:
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})


def plan_request(request: DeployRequest, *, code: contextlib.ExitStack | None = None) -> PlanResult:
    """Read git, discover, resolve and plan, one stage after the other. Probes Docker only for
    `--mode auto`.

    With `--sha` naming another commit than a clean HEAD, the code is that commit's tree, checked
    out for the deploy: `code` keeps it until it closes (default: until the process exits)."""
    settings = request.settings
    root_dir = settings.root
    if not root_dir.is_dir():
        raise UsageError(f"--root-dir {settings.root_dir}: not a directory")
    git = read_git_context(root_dir, sha=settings.sha)
    version = version_info(git, override=settings.version)
    holder = code if code is not None else _until_exit() if git.from_commit else contextlib.ExitStack()
    tree = holder.enter_context(commit_tree(git, root_dir))
    selection = request.selection.model_copy(update={"path": tree.locate(request.selection.path)})
    git = git.model_copy(update={"root": tree.top})
    scope = FlyteScope(project=settings.project, domain=settings.domain, org=settings.org)
    graph = resolve(discover(selection, tree.root_dir, scope))
    docker_available = docker_answers() if settings.mode is Mode.auto else False
    plan = make_plan(git, version, graph, PlanSettings.of(settings), docker_available=docker_available)
    return PlanResult(plan=plan, graph=graph, git=git, version=version)


def _until_exit() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    return stack


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
    git: GitContext,
    version: VersionInfo,
    graph: EnvGraph,
    options: PlanSettings,
    *,
    docker_available: bool,
) -> Plan:
    style = options.copy_style.resolved()
    if style is CopyStyle.none and options.mode is Mode.bundle:
        raise PlanError("--mode bundle needs a code bundle, but --copy-style is none")
    image_map = parse_image_map(options.images)
    mirrors = parse_mirrors(options.base_image_mirrors)
    root_dir = Path(graph.root_dir)
    planned: list[PlannedEnv] = []
    for node in graph.environments:
        spec = image_spec(node.env, image_map, copy_style=style.value)
        mode, reason = _mode(spec, options, style, docker_available)
        app = is_app(node.env)
        if app:
            mode, reason = app_mode(node.env, mode, reason, style is CopyStyle.none)
        if mode == "container" and style is not CopyStyle.none:
            # The code is baked in: whatever the spec says, the image deployed is a new build.
            spec = spec.model_copy(update={"uri": None, "needs_build": True})
        elif spec.uri is not None:
            spec = spec.model_copy(update={"uri": apply_mirrors(spec.uri, mirrors)})
        planned.append(
            PlannedEnv(
                name=node.name,
                depends_on=tuple(sorted({d.name for d in node.env.depends_on})),
                tasks=() if app else tuple(sorted(node.env.tasks)),
                image=spec,
                mode=mode,
                mode_reason=reason,
                source_file=_relative(node.file, root_dir),
                kind="app" if app else "task",
                triggers=() if app else planned_triggers(node.env, options.trigger_policy),
                app=planned_app(node.env, options.app_suffix) if app else None,
            )
        )
    includes = env_includes(node.env for node in graph.environments)
    bundle = bundle_spec(root_dir, style, graph.loaded_files, includes)
    return Plan(
        version=version.version,
        git=git.info(),
        image_tags=version.image_tags,
        release=version.release,
        project=options.project,
        domain=options.domain,
        root_dir=_relative(root_dir, git.root) or Path("."),
        environments=tuple(planned),
        bundle=bundle,
        image_args=_image_args(graph.environments, planned, image_map, mirrors),
        copy_style=style,
        registry=options.registry,
        trigger_policy=options.trigger_policy,
        warnings=(*version.warnings, *graph.warnings),
    )


def _mode(
    spec: ImageSpec, options: PlanSettings, style: CopyStyle, docker_available: bool
) -> tuple[DeployMode, str]:
    if style is CopyStyle.none:
        if spec.needs_build:
            return "container", "--copy-style none: no bundle; the image is built from its spec"
        return "container", f"--copy-style none: no bundle; {spec.uri} runs as-is and must hold the code"
    if spec.external:
        return "bundle", f"{spec.uri} is deployed as-is: the code ships in the bundle"
    if options.mode is Mode.bundle:
        return "bundle", "--mode bundle"
    if options.mode is Mode.container:
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


def image_map(plan: Plan, built: tuple[BuiltImage, ...]) -> dict[str, str]:
    """{name: uri}: a ref image under its ref name, every other environment under its own name."""
    by_env = {image.env_name: image.uri for image in built}
    mapping: dict[str, str] = {}
    for env in plan.environments:
        uri = by_env.get(env.name) or env.image.uri
        if uri:
            mapping.setdefault(env.image.ref_name or env.name, uri)
    return mapping

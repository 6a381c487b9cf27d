"""The whole deploy, in one straight line: plan → bundle → images → specs → register → Report.

Everything that can be refused is checked before anything is built, uploaded or registered:
planning errors, the serialization of every task (with the images it will get, or a placeholder
for images still to build), a reachable control plane, and (once images exist) version conflicts
for every task. So a bad input leaves nothing half-deployed.

Registration walks the environments in topological order (dependencies first). It stops at the
first environment the control plane refuses or cannot take; the Report then says which
environments are registered and which are not, and running the same deploy again completes the
rest (tasks already registered come back "unchanged").
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flyteidl2.task.task_definition_pb2 import TaskSpec
from google.protobuf import json_format

from deployer.errors import BundleError, ControlPlaneError, DeployError, UsageError, VersionConflict
from deployer.models import (
    Artifacts,
    BuiltImage,
    BundleArtifact,
    CopyStyle,
    Deployment,
    DeployRequest,
    EnvDeployment,
    Plan,
    PlannedEnv,
    Report,
    Timing,
)

if TYPE_CHECKING:
    from deployer.controlplane.client import ControlPlaneClient
    from deployer.images.options import ImageOptions
    from deployer.plan import PlanResult
    from deployer.progress import Progress as StageProgress
    from deployer.storage import Storage

Progress = Callable[[str], None]
EnvStatus = Literal["registered", "unchanged", "failed", "skipped"]
EnvRegistered = Callable[[EnvDeployment], None]


def _quiet(_message: str) -> None:
    pass


def state_dir_for(request: DeployRequest) -> Path:
    """`--state-dir`, else `<root_dir>/.flyte-deploy`."""
    return Path(request.state_dir or Path(request.root_dir) / ".flyte-deploy").resolve()


@dataclass
class Outcome:
    """A deploy's report plus the specs it sent (or, in a dry run, would send)."""

    report: Report
    specs: dict[str, list[TaskSpec]] = field(default_factory=dict)

    def specs_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            env: [json_format.MessageToDict(spec, preserving_proto_field_name=True) for spec in specs]
            for env, specs in self.specs.items()
        }


def deploy(request: DeployRequest) -> Report:
    """Run the pipeline for one request (the CLI and the GitHub Action both call this)."""
    return run(request).report


def run(
    request: DeployRequest,
    *,
    progress: Progress = _quiet,
    on_registered: EnvRegistered | None = None,
) -> Outcome:
    """`deploy`, with progress lines and a hook called after each environment is registered."""
    started_at = datetime.now(UTC)
    clock = _Clock()
    with clock("plan"):
        from deployer.plan import plan_request

        planned = plan_request(request)
    plan = planned.plan
    progress(_describe_plan(plan))
    _check_request(plan, request)
    state_dir = state_dir_for(request)
    storage = _storage(plan, request, state_dir)
    digest = plan.bundle.digest if plan.bundle else None
    bundle_uri = storage.uri_for(digest) if storage is not None and digest else None
    with clock("validate"):
        _serialize_all(request, planned, _planned_images(plan), bundle_uri)
    if request.dry_run:
        return _dry_run(request, planned, bundle_uri, clock, started_at)

    with _control_plane(request, state_dir) as (endpoint, client):
        first = plan.environments[0] if plan.environments else None
        if first is not None and first.tasks:
            # Fail on an unreachable or refusing control plane before building anything.
            client.get_task(plan.project, plan.domain, request.org, first.tasks[0], plan.version)
        bundle = None
        if storage is not None:
            with clock("bundle"):
                bundle = _upload_bundle(plan, planned.graph.root_dir, storage, state_dir, progress)
        images: tuple[BuiltImage, ...] = ()
        if any(env.image.needs_build for env in plan.environments):
            with clock("images"):
                images = _build_images(planned, request, progress)
        uris = _pin_as_is_images(plan, _image_uris(plan, images, pending_ok=False), progress)
        with clock("serialize"):
            specs = _serialize_all(request, planned, uris, bundle.uri if bundle else None)
        with clock("register"):
            statuses = _register(plan, request.org, specs, client, uris, bundle, progress, on_registered)
        deployment = _deployment(plan, endpoint, statuses, dry_run=False)
    report = Report(
        plan=plan,
        artifacts=Artifacts(bundle=bundle, images=images),
        deployment=deployment,
        timings=clock.timings,
        started_at=started_at,
    )
    return Outcome(report=report, specs=specs)


def _check_request(plan: Plan, request: DeployRequest) -> None:
    if plan.copy_style is CopyStyle.none and request.version is None:
        # The code is already in the images: the commit this runs from does not say which code that is.
        raise UsageError(
            "--copy-style none ships no code, so the version cannot follow the commit: pass --version "
            "naming the code your images hold"
        )
    bundle_envs = [env for env in plan.environments if env.mode == "bundle"]
    if bundle_envs and (plan.bundle is None or plan.bundle.digest is None):
        raise BundleError(f"{_names(bundle_envs)}: code ships in a bundle, but no bundle is planned")
    to_build = [env for env in plan.environments if env.image.needs_build]
    if to_build and not request.push and not request.dry_run:
        raise UsageError(
            f"--no-push: the images of {_names(to_build)} would exist only on this machine, and tasks are "
            "registered with image digests from a registry (to build only: `flyte-deploy build --no-push`)"
        )


def _storage(plan: Plan, request: DeployRequest, state_dir: Path) -> Storage | None:
    """Bundle storage, when some environment ships its code in the bundle."""
    if not any(env.mode == "bundle" for env in plan.environments):
        return None
    from deployer.storage import open_storage

    return open_storage(request.storage, state_dir=state_dir)


def _dry_run(
    request: DeployRequest, planned: PlanResult, bundle_uri: str | None, clock: _Clock, started_at: datetime
) -> Outcome:
    """Everything a deploy would send, with nothing built, pushed, uploaded or registered."""
    plan = planned.plan
    images: tuple[BuiltImage, ...] = ()
    if any(env.image.needs_build for env in plan.environments):
        with clock("images"):
            # with request.dry_run: renders and looks up only
            images = _build_images(planned, request, _quiet)
    uris = _image_uris(plan, images, pending_ok=True)
    specs = _serialize_all(request, planned, uris, bundle_uri)
    statuses = [
        _env_status(env, "skipped", uris, bundle_uri if env.mode == "bundle" else None)
        for env in plan.environments
    ]
    report = Report(
        plan=plan,
        artifacts=Artifacts(bundle=_planned_bundle(plan, bundle_uri), images=images),
        deployment=_deployment(plan, request.endpoint or "embedded", statuses, dry_run=True),
        timings=clock.timings,
        started_at=started_at,
    )
    return Outcome(report=report, specs=specs)


# ---------------------------------------------------------------------------------------------- stages


def _upload_bundle(
    plan: Plan, root_dir: Path, storage: Storage, state_dir: Path, progress: Progress
) -> BundleArtifact:
    from deployer.bundle import build_bundle

    if plan.bundle is None:
        raise BundleError("no bundle was planned")
    digest, size = plan.bundle.digest, plan.bundle.size
    if digest is not None and size is not None and storage.holds(digest, size):
        # The plan already hashed these exact bytes: a stored copy needs no second compression.
        stored = _planned_bundle(plan, storage.uri_for(digest))
        if stored is not None:
            progress(f"bundle: reused {stored.uri} ({size} bytes, {len(plan.bundle.files)} files)")
            return stored.model_copy(update={"reused": True})
    state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=state_dir, prefix="bundle-") as out_dir:
        artifact = build_bundle(Path(root_dir), plan.bundle.files, Path(out_dir))
        if artifact.digest != plan.bundle.digest:
            raise BundleError(
                f"the code under {root_dir} changed while deploying (bundle sha256 {artifact.digest}, "
                f"planned {plan.bundle.digest}): deploy again"
            )
        uploaded = storage.upload(artifact)
    verb = "reused" if uploaded.reused else "uploaded"
    progress(f"bundle: {verb} {uploaded.uri} ({uploaded.size} bytes, {len(plan.bundle.files)} files)")
    return uploaded


def _build_images(planned: PlanResult, request: DeployRequest, progress: Progress) -> tuple[BuiltImage, ...]:
    from deployer.images import build_images

    options = image_options(request)
    return tuple(build_images(planned.plan, planned.graph, planned.git, options, line_progress(progress)))


def image_options(request: DeployRequest) -> ImageOptions:
    """The images stage's options: the request's flags over the settings' variables."""
    from deployer.images.options import ImageOptions
    from deployer.images.spec import parse_image_map
    from deployer.images.tags import parse_mirrors
    from deployer.settings import load_settings

    return ImageOptions.from_settings(
        load_settings(),
        registry=request.registry,
        push=request.push,
        dry_run=request.dry_run,
        image_map=parse_image_map(request.images),
        mirrors=parse_mirrors(request.base_image_mirrors),
        copy_style=request.copy_style,
    )


def line_progress(emit: Progress) -> StageProgress:
    """A stage's `deployer.progress.Progress` that writes its lines through `emit`."""
    from deployer.progress import NullProgress

    class _Lines(NullProgress):
        def info(self, message: str) -> None:
            emit(message)

        def warning(self, message: str) -> None:
            emit(f"warning: {message}")

    return _Lines()


def _planned_images(plan: Plan) -> dict[str, str]:
    """Images for validation: the known URI, or a placeholder for one still to build."""
    return {
        env.name: env.image.uri or f"flyte-deploy.invalid/pending/{env.name}:{env.image.spec_id}"
        for env in plan.environments
    }


def _image_uris(plan: Plan, images: Sequence[BuiltImage], *, pending_ok: bool) -> dict[str, str]:
    """The image every environment's tasks run in: the built one (by digest), else the planned one.

    Bundle-mode environments whose image needs no build run in their base image as planned (after
    `--image` mapping and base-image mirrors): the code arrives with the bundle."""
    built = {image.env_name: image for image in images}
    uris: dict[str, str] = {}
    for env in plan.environments:
        image = built.get(env.name)
        if image is not None:
            if image.digest is None and not pending_ok:
                raise DeployError(f"image {image.uri} of {env.name} is not pushed: it has no digest")
            uris[env.name] = image.uri
        elif env.image.uri is not None:
            uris[env.name] = env.image.uri
        elif pending_ok:
            uris[env.name] = _planned_images(plan)[env.name]
        else:
            raise DeployError(f"environment {env.name}: its image needs a build, but none was built")
    return uris


def _pin_as_is_images(plan: Plan, uris: dict[str, str], progress: Progress) -> dict[str, str]:
    """Images deployed as-is are registered by the digest their tag names now, when the registry
    answers; otherwise by the tag, and the user is told."""
    from deployer.images.pinning import pin_by_digest

    pinned: dict[str, str] = {}
    resolved: dict[str, str | None] = {}
    for env in plan.environments:
        uri = uris[env.name]
        if env.image.needs_build or "@" in uri:
            pinned[env.name] = uri
            continue
        if uri not in resolved:
            resolved[uri] = pin_by_digest(uri)
            if resolved[uri] is None:
                progress(f"warning: {uri} is deployed by tag: its registry did not answer with a digest")
        pinned[env.name] = resolved[uri] or uri
    return pinned


def _serialize_all(
    request: DeployRequest, planned: PlanResult, uris: dict[str, str], bundle_uri: str | None
) -> dict[str, list[TaskSpec]]:
    from deployer.controlplane.serialize import task_specs

    plan = planned.plan
    digest = plan.bundle.digest if plan.bundle else None
    specs: dict[str, list[TaskSpec]] = {}
    for env in plan.environments:
        in_bundle = env.mode == "bundle"
        specs[env.name] = task_specs(
            planned.graph.env(env.name).env,
            version=plan.version,
            project=plan.project,
            domain=plan.domain,
            org=request.org,
            root_dir=Path(planned.graph.root_dir),
            image_uri=uris[env.name],
            bundle_uri=bundle_uri if in_bundle else None,
            bundle_digest=digest if in_bundle else None,
            image_lookup=uris,
            sys_paths=planned.graph.sys_paths or None,
        )
    return specs


def _register(
    plan: Plan,
    org: str,
    specs: dict[str, list[TaskSpec]],
    client: ControlPlaneClient,
    uris: dict[str, str],
    bundle: BundleArtifact | None,
    progress: Progress,
    on_registered: EnvRegistered | None,
) -> list[EnvDeployment]:
    bundle_uri = bundle.uri if bundle else None
    _refuse_conflicts(plan, org, specs, client)
    statuses: list[EnvDeployment] = []
    failed = False
    for env in plan.environments:
        env_bundle = bundle_uri if env.mode == "bundle" else None
        if failed:
            statuses.append(_env_status(env, "skipped", uris, env_bundle))
            continue
        try:
            outcomes = [
                client.deploy_task(
                    spec,
                    project=plan.project,
                    domain=plan.domain,
                    org=org,
                    name=spec.task_template.id.name,
                    version=plan.version,
                )
                for spec in specs[env.name]
            ]
        except ControlPlaneError as exc:
            failed = True
            statuses.append(_env_status(env, "failed", uris, env_bundle, error=str(exc)))
            progress(f"{env.name}: failed: {exc}")
            continue
        status: EnvStatus = "registered" if "registered" in outcomes else "unchanged"
        done = _env_status(env, status, uris, env_bundle)
        statuses.append(done)
        progress(f"{env.name}: {status} ({_count(len(outcomes), 'task')}, version {plan.version})")
        if on_registered is not None:
            on_registered(done)
    return statuses


def _refuse_conflicts(
    plan: Plan, org: str, specs: dict[str, list[TaskSpec]], client: ControlPlaneClient
) -> None:
    """Versions are immutable: refuse the whole deploy, before registering anything, when one of
    its tasks exists under this version with a different spec."""
    from deployer.controlplane.specs import spec_differences, spec_digest

    for env in plan.environments:
        for spec in specs[env.name]:
            name = spec.task_template.id.name
            existing = client.get_task(plan.project, plan.domain, org, name, plan.version)
            if existing is None or spec_digest(existing.spec) == spec_digest(spec):
                continue
            fields = ", ".join(spec_differences(existing.spec, spec)) or "encoding"
            raise VersionConflict(
                f"task {name} version {plan.version} already exists in {plan.project}/{plan.domain} with a "
                f"different spec (differs in: {fields}); versions are immutable: commit the change or pass "
                "a new --version. Nothing was registered"
            )


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _control_plane(request: DeployRequest, state_dir: Path) -> Iterator[tuple[str, ControlPlaneClient]]:
    from deployer.controlplane.client import ControlPlaneClient

    api_key = request.api_key.get_secret_value() if request.api_key else None
    with contextlib.ExitStack() as stack:
        if request.endpoint:
            endpoint = request.endpoint
        else:
            from deployer.controlplane.embedded import embedded_control_plane

            endpoint = stack.enter_context(embedded_control_plane(state_dir))
        client = stack.enter_context(ControlPlaneClient(endpoint, insecure=request.insecure, api_key=api_key))
        yield (endpoint if request.endpoint else f"embedded ({state_dir})"), client


def _env_status(
    env: PlannedEnv,
    status: EnvStatus,
    uris: dict[str, str],
    bundle_uri: str | None,
    *,
    error: str | None = None,
) -> EnvDeployment:
    return EnvDeployment(
        name=env.name,
        tasks=env.tasks,
        status=status,
        image=uris.get(env.name),
        bundle_uri=bundle_uri if env.mode == "bundle" else None,
        error=error,
    )


def _deployment(plan: Plan, endpoint: str, statuses: list[EnvDeployment], *, dry_run: bool) -> Deployment:
    return Deployment(
        version=plan.version,
        project=plan.project,
        domain=plan.domain,
        endpoint=endpoint,
        environments=tuple(statuses),
        dry_run=dry_run,
    )


def _planned_bundle(plan: Plan, uri: str | None) -> BundleArtifact | None:
    if uri is None or plan.bundle is None or plan.bundle.digest is None:
        return None
    return BundleArtifact(
        digest=plan.bundle.digest,
        size=plan.bundle.size or 0,
        path=Path(f"{plan.bundle.digest}.tar.gz"),
        uri=uri,
        files=plan.bundle.files,
    )


def _describe_plan(plan: Plan) -> str:
    envs = ", ".join(f"{env.name} ({env.mode})" for env in plan.environments)
    return f"plan: version {plan.version} → {plan.project}/{plan.domain}: {envs}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _names(envs: Sequence[PlannedEnv]) -> str:
    return ", ".join(env.name for env in envs)


class _Clock:
    def __init__(self) -> None:
        self._timings: list[Timing] = []

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self._timings.append(Timing(stage=stage, seconds=round(time.monotonic() - start, 3)))

    @property
    def timings(self) -> tuple[Timing, ...]:
        return tuple(self._timings)

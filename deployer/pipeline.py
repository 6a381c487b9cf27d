"""The whole deploy, in one straight line: plan → bundle → images → specs → register → Report.

`run(request, until=...)` stops after a stage:
- `"plan"` (a dry run): everything a deploy would send is computed and shown, images are rendered and
  looked up in the registry, and nothing is built, pushed, uploaded or registered;
- `"build"` (build only: fork PRs, `push: false`, `flyte-deploy build`): images are built (and pushed when
  the settings say so); nothing is uploaded or registered;
- `"deploy"`: everything.

Everything that can be refused is checked before anything is built, uploaded or registered: planning
errors, the serialization of every task (with the images it will get, or a placeholder for images still to
build), a reachable control plane, and (once images exist) version conflicts for every task. So a bad
input leaves nothing half-deployed.

Registration walks the environments in topological order (dependencies first). It stops at the first
environment the control plane refuses or cannot take; the Report then says which environments are
registered and which are not, and running the same deploy again completes the rest (tasks already
registered come back "unchanged").
"""

from __future__ import annotations

import contextlib
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
    EnvDeployment,
    EnvStatus,
    Plan,
    PlannedEnv,
    Report,
    Timing,
)
from deployer.progress import QUIET, Progress
from deployer.redact import printable_url
from deployer.request import DeployRequest

if TYPE_CHECKING:
    from deployer.controlplane.base import ControlPlane
    from deployer.images.options import ImageOptions
    from deployer.plan import PlanResult
    from deployer.storage import Storage

Stage = Literal["plan", "build", "deploy"]
EnvRegistered = Callable[[EnvDeployment], None]


BUNDLE_SCRATCH = "bundle-"


@dataclass
class Outcome:
    """A run's report plus the specs it sent (or, in a dry run, would send)."""

    report: Report
    specs: dict[str, list[TaskSpec]] = field(default_factory=dict)

    def specs_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            env: [json_format.MessageToDict(spec, preserving_proto_field_name=True) for spec in specs]
            for env, specs in self.specs.items()
        }


def run(
    request: DeployRequest,
    *,
    until: Stage = "deploy",
    progress: Progress = QUIET,
    on_registered: EnvRegistered | None = None,
) -> Outcome:
    """Run the pipeline for one request up to `until` (the CLI and the GitHub Action both call this).

    With `settings.dry_run`, a deploy stops after "plan" and a build only renders images and looks them
    up. `on_registered` is called after each environment is registered."""
    with contextlib.ExitStack() as code:  # holds the commit's tree (`--sha`) until the run is done
        return _run(request, code, until=until, progress=progress, on_registered=on_registered)


def _run(
    request: DeployRequest,
    code: contextlib.ExitStack,
    *,
    until: Stage,
    progress: Progress,
    on_registered: EnvRegistered | None,
) -> Outcome:
    settings = request.settings
    # A dry run of a deploy shows what would be sent; a dry run of a build only looks images up.
    stage: Stage = "plan" if settings.dry_run and until == "deploy" else until
    started_at = datetime.now(UTC)
    clock = _Clock()
    with clock("plan"):
        from deployer.plan import plan_request

        planned = plan_request(request, code=code)
    plan = planned.plan
    progress.info(_describe_plan(plan))
    for warning in plan.warnings:
        progress.warning(warning)
    _check_request(plan, request, stage)
    if stage == "build":
        return _build_only(request, planned, clock, started_at, progress)

    storage = _storage(plan, request, progress)
    digest = plan.bundle.digest if plan.bundle else None
    bundle_uri = storage.uri_for(digest) if storage is not None and digest else None
    with clock("validate"):
        _serialize_all(planned, _planned_images(plan), bundle_uri, org=settings.org)
    if stage == "plan":
        return _dry_run(request, planned, bundle_uri, clock, started_at, progress)

    from deployer.controlplane import open_control_plane

    with open_control_plane(settings) as plane:
        first = plan.environments[0] if plan.environments else None
        if first is not None and first.tasks:
            # Fail on an unreachable or refusing control plane before building anything.
            plane.get_task(plan.project, plan.domain, settings.org, first.tasks[0], plan.version)
        bundle = None
        if storage is not None:
            with clock("bundle"):
                bundle = _upload_bundle(plan, planned.graph.root_dir, storage, settings.state, progress)
        images: tuple[BuiltImage, ...] = ()
        if any(env.image.needs_build for env in plan.environments):
            with clock("images"):
                # Tags a release or branch reads move only once the control plane took the deploy.
                images = _build_images(planned, request, progress, publish=False)
        uris = _pin_as_is_images(plan, _image_uris(plan, images, pending_ok=False), progress)
        with clock("serialize"):
            specs = _serialize_all(planned, uris, bundle.uri if bundle else None, org=settings.org)
        with clock("register"):
            statuses = _register(plan, settings.org, specs, plane, uris, bundle, progress, on_registered)
        deployment = _deployment(plan, plane.label, statuses, dry_run=False)
        if images and deployment.ok:
            from deployer.images.pipeline import publish_tags

            images = publish_tags(plan, images, image_options(request), progress)
    report = _report(plan, Artifacts(bundle=bundle, images=images), deployment, clock, started_at)
    return Outcome(report=report, specs=specs)


def _check_request(plan: Plan, request: DeployRequest, stage: Stage) -> None:
    settings = request.settings
    if stage != "build" and plan.copy_style is CopyStyle.none and settings.version is None:
        # The code is already in the images: the commit this runs from does not say which code that is.
        raise UsageError(
            "--copy-style none ships no code, so the version cannot follow the commit: pass --version "
            "naming the code your images hold"
        )
    bundle_envs = [env for env in plan.environments if env.mode == "bundle"]
    if bundle_envs and (plan.bundle is None or plan.bundle.digest is None):
        raise BundleError(f"{_names(bundle_envs)}: code ships in a bundle, but no bundle is planned")
    to_build = [env for env in plan.environments if env.image.needs_build]
    if stage == "deploy" and to_build and not settings.push:
        raise UsageError(
            f"--no-push: the images of {_names(to_build)} would exist only on this machine, and tasks are "
            "registered with image digests from a registry (to build only: `flyte-deploy build --no-push`)"
        )


def _storage(plan: Plan, request: DeployRequest, progress: Progress) -> Storage | None:
    """Bundle storage, when some environment ships its code in the bundle."""
    if not any(env.mode == "bundle" for env in plan.environments):
        return None
    from deployer.storage import S3Options, open_storage

    settings = request.settings
    return open_storage(
        settings.storage, state_dir=settings.state, s3=S3Options.from_settings(settings), progress=progress
    )


def _dry_run(
    request: DeployRequest,
    planned: PlanResult,
    bundle_uri: str | None,
    clock: _Clock,
    started_at: datetime,
    progress: Progress,
) -> Outcome:
    """Everything a deploy would send, with nothing built, pushed, uploaded or registered."""
    plan = planned.plan
    images: tuple[BuiltImage, ...] = ()
    if any(env.image.needs_build for env in plan.environments):
        with clock("images"):
            images = _build_images(planned, request.with_settings(dry_run=True), progress)
    uris = _image_uris(plan, images, pending_ok=True)
    specs = _serialize_all(planned, uris, bundle_uri, org=request.settings.org)
    statuses = [
        _env_status(env, "skipped", uris, bundle_uri if env.mode == "bundle" else None)
        for env in plan.environments
    ]
    deployment = _deployment(
        plan, printable_url(request.settings.endpoint or "embedded"), statuses, dry_run=True
    )
    artifacts = Artifacts(bundle=_planned_bundle(plan, bundle_uri) if bundle_uri else None, images=images)
    return Outcome(report=_report(plan, artifacts, deployment, clock, started_at), specs=specs)


def _build_only(
    request: DeployRequest, planned: PlanResult, clock: _Clock, started_at: datetime, progress: Progress
) -> Outcome:
    """Images built (pushed only when the settings allow); the bundle as planned, never uploaded."""
    plan = planned.plan
    images: tuple[BuiltImage, ...] = ()
    if any(env.image.needs_build for env in plan.environments):
        with clock("images"):
            images = _build_images(planned, request, progress)
    bundle = None
    if plan.bundle is not None and any(env.mode == "bundle" for env in plan.environments):
        bundle = _planned_bundle(plan, None)
    return Outcome(report=_report(plan, Artifacts(bundle=bundle, images=images), None, clock, started_at))


def _report(
    plan: Plan, artifacts: Artifacts, deployment: Deployment | None, clock: _Clock, started_at: datetime
) -> Report:
    return Report(
        plan=plan, artifacts=artifacts, deployment=deployment, timings=clock.timings, started_at=started_at
    )


# ---------------------------------------------------------------------------------------------- stages


def _upload_bundle(
    plan: Plan, root_dir: Path, storage: Storage, state_dir: Path, progress: Progress
) -> BundleArtifact:
    from deployer.bundle import build_bundle
    from deployer.scratch import held_dir, sweep

    if plan.bundle is None:
        raise BundleError("no bundle was planned")
    sweep(state_dir, BUNDLE_SCRATCH)  # bundle copies of deploys that were killed
    digest, size = plan.bundle.digest, plan.bundle.size
    if digest is not None and size is not None and storage.holds(digest, size):
        # The plan already hashed these exact bytes: a stored copy needs no second compression.
        stored = _planned_bundle(plan, storage.uri_for(digest))
        if stored is not None:
            progress.info(f"bundle: reused {stored.uri} ({size} bytes, {len(plan.bundle.files)} files)")
            return stored.model_copy(update={"reused": True})
    with held_dir(state_dir, BUNDLE_SCRATCH) as out_dir:
        artifact = build_bundle(Path(root_dir), plan.bundle.files, out_dir)
        if artifact.digest != plan.bundle.digest:
            raise BundleError(
                f"the code under {root_dir} changed while deploying (bundle sha256 {artifact.digest}, "
                f"planned {plan.bundle.digest}): deploy again"
            )
        uploaded = storage.upload(artifact)
    verb = "reused" if uploaded.reused else "uploaded"
    progress.info(f"bundle: {verb} {uploaded.uri} ({uploaded.size} bytes, {len(plan.bundle.files)} files)")
    return uploaded


def _build_images(
    planned: PlanResult, request: DeployRequest, progress: Progress, *, publish: bool = True
) -> tuple[BuiltImage, ...]:
    from deployer.images import build_images

    options = image_options(request)
    return tuple(build_images(planned.plan, planned.graph, planned.git, options, progress, publish=publish))


def image_options(request: DeployRequest) -> ImageOptions:
    """The images stage's options, from the request's settings."""
    from deployer.images.options import ImageOptions

    return ImageOptions.from_settings(request.settings)


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
                progress.warning(f"{uri} is deployed by tag: its registry did not answer with a digest")
        pinned[env.name] = resolved[uri] or uri
    return pinned


def _serialize_all(
    planned: PlanResult, uris: dict[str, str], bundle_uri: str | None, *, org: str
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
            org=org,
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
    plane: ControlPlane,
    uris: dict[str, str],
    bundle: BundleArtifact | None,
    progress: Progress,
    on_registered: EnvRegistered | None,
) -> list[EnvDeployment]:
    bundle_uri = bundle.uri if bundle else None
    _refuse_conflicts(plan, org, specs, plane)
    statuses: list[EnvDeployment] = []
    failed = False
    for env in plan.environments:
        env_bundle = bundle_uri if env.mode == "bundle" else None
        if failed:
            statuses.append(_env_status(env, "skipped", uris, env_bundle))
            continue
        try:
            outcomes = [plane.deploy_task(spec) for spec in specs[env.name]]
        except ControlPlaneError as exc:
            failed = True
            statuses.append(_env_status(env, "failed", uris, env_bundle, error=str(exc)))
            progress.info(f"{env.name}: failed: {exc}")
            continue
        status: EnvStatus = "registered" if "registered" in outcomes else "unchanged"
        done = _env_status(env, status, uris, env_bundle)
        statuses.append(done)
        progress.info(f"{env.name}: {status} ({_count(len(outcomes), 'task')}, version {plan.version})")
        if on_registered is not None:
            on_registered(done)
    return statuses


def _refuse_conflicts(plan: Plan, org: str, specs: dict[str, list[TaskSpec]], plane: ControlPlane) -> None:
    """Versions are immutable: refuse the whole deploy, before registering anything, when one of
    its tasks exists under this version with a different spec."""
    from deployer.controlplane.specs import spec_differences, spec_digest

    for env in plan.environments:
        for spec in specs[env.name]:
            name = spec.task_template.id.name
            existing = plane.get_task(plan.project, plan.domain, org, name, plan.version)
            if existing is None or spec_digest(existing.spec) == spec_digest(spec):
                continue
            fields = ", ".join(spec_differences(existing.spec, spec)) or "encoding"
            raise VersionConflict(
                f"task {name} version {plan.version} already exists in {plan.project}/{plan.domain} with a "
                f"different spec (differs in: {fields}); versions are immutable: commit the change or pass "
                "a new --version. Nothing was registered"
            )


# ---------------------------------------------------------------------------------------------- helpers


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
    if plan.bundle is None or plan.bundle.digest is None:
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

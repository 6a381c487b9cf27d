"""The whole deploy, in one straight line: plan → bundle → images → specs → register → Report.

`run(request, until=...)` stops after a stage:
- `"plan"` (a dry run): everything a deploy would send is computed and shown, images are rendered and
  looked up in the registry, and nothing is built, pushed, uploaded or registered;
- `"build"` (build only: fork PRs, `push: false`, `flyte-deploy build`): images are built (and pushed when
  the settings say so); nothing is uploaded or registered;
- `"deploy"`: everything.

Everything that can be refused is checked before anything is built, uploaded or registered: planning
errors, a reachable control plane that has the project, the serialization of every task (once, with
placeholder image and bundle references filled in afterwards), and (once images exist) version conflicts
for every task. So a bad input leaves nothing half-deployed.

Bundles go to `--storage` when it is given, else through the control plane's data proxy (as `flyte
deploy` uploads them: no bucket credentials needed). When the control plane already holds this exact
deploy (a receipt in the state dir and one bulk listing, see `controlplane.registration`), nothing is
serialized, uploaded or registered; images to build are only looked up.

Registration goes level by level of the dependency graph (dependencies strictly first, the environments of
a level at once). It stops after the first level with an environment the control plane refuses or cannot
take; the Report then says which environments are registered and which are not, and running the same
deploy again completes the rest (tasks already registered come back "unchanged").

Task environments register their tasks with their triggers (active as the trigger policy allows), app
environments create or update their app (`deployer.registration`); triggers the code no longer has are
removed once every environment is registered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flyteidl2.app.app_definition_pb2 import App
from flyteidl2.task.task_definition_pb2 import TaskSpec, TaskTrigger
from google.protobuf import json_format

from deployer.errors import BundleError, ControlPlaneError, DeployError, UsageError
from deployer.models import (
    AppDeployment,
    Artifacts,
    BuiltImage,
    BundleArtifact,
    CopyStyle,
    Deployment,
    EnvDeployment,
    EnvStatus,
    Plan,
    PlannedEnv,
    PlannedTrigger,
    Report,
    Timing,
    TriggerDeployment,
)
from deployer.progress import QUIET, Progress
from deployer.redact import printable_url
from deployer.request import DeployRequest

if TYPE_CHECKING:
    from deployer.controlplane.base import ControlPlane
    from deployer.images.options import ImageOptions
    from deployer.plan import PlanResult
    from deployer.settings import Settings
    from deployer.storage import Storage

Stage = Literal["plan", "build", "deploy"]
BUNDLE_SCRATCH = "bundle-"
EnvRegistered = Callable[[EnvDeployment], None]


@dataclass
class Outcome:
    """A run's report plus the specs it sent (or, in a dry run, would send)."""

    report: Report
    specs: dict[str, list[TaskSpec]] = field(default_factory=dict)
    triggers: dict[str, list[TaskTrigger]] = field(default_factory=dict)
    """{task name: the triggers sent with it}."""
    apps: dict[str, App] = field(default_factory=dict)
    """{app environment name: the app sent}."""

    def specs_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            env: [json_format.MessageToDict(spec, preserving_proto_field_name=True) for spec in specs]
            for env, specs in self.specs.items()
        }

    def triggers_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            task: [json_format.MessageToDict(t, preserving_proto_field_name=True) for t in triggers]
            for task, triggers in self.triggers.items()
            if triggers
        }

    def apps_json(self) -> dict[str, dict[str, Any]]:
        return {
            env: json_format.MessageToDict(app, preserving_proto_field_name=True)
            for env, app in self.apps.items()
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

    storage = _explicit_storage(plan, request, progress)
    if stage == "plan":
        with clock("serialize"):
            shown = _draft_all(planned, org=settings.org)
        return _dry_run(request, planned, shown, storage, clock, started_at, progress)

    checked: _Drafts | None = None
    if _has_triggers_or_apps(plan):
        # Triggers and apps are checked as the plane would check them before the plane is even opened:
        # one it would refuse leaves no trace anywhere (an embedded plane's state included).
        with clock("serialize"):
            checked = _draft_all(planned, org=settings.org)
            _sent(planned, checked.specs, checked.images, None, settings)

    from deployer.controlplane import open_control_plane

    with open_control_plane(settings) as plane:
        # Fail on an unreachable or refusing control plane, or a missing project, before building anything.
        _ensure_project(plane, plan, settings, progress)
        # One lookup under this deploy's identifiers: a plane refusing them (a version too long for it,
        # say) refuses here, before anything is built.
        _probe(plane, plan, settings.org)
        pinned = _pin_as_is_images(plan, _planned_images(plan), progress)
        held = _held_deploy(plane, planned, pinned, storage, settings)
        images: tuple[BuiltImage, ...] = ()
        built = False
        if held is not None and _needs_images(plan):
            # Held or not, the images are looked up (and tagged for this event), as a redeploy always did;
            # an image that had to be built again has another digest: then this is not the deploy held.
            with clock("images"):
                images = _build_images(planned, request, progress, publish=False)
            built = True
            if {**pinned, **_built_uris(plan, images)} != held.images:
                held = None
        if held is not None:
            held = _with_held_triggers(held, plane, plan, settings.org, progress)
            for status in held.statuses:
                progress.info(
                    f"{status.name}: unchanged ({_count(len(status.tasks), 'task')}, version {plan.version})"
                )
            progress.info(f"{plane.label} holds this exact deploy already: nothing to serialize or register")
            deployment = _deployment(plan, plane.label, held.statuses, dry_run=False)
            images = _publish(plan, images, request, progress)
            report = _report(
                plan, Artifacts(bundle=held.bundle, images=images), deployment, clock, started_at
            )
            return Outcome(report=report, specs={})
        drafts = checked
        if drafts is None:
            with clock("serialize"):  # once, before anything is built or uploaded: a bad task stops it here
                drafts = _draft_all(planned, org=settings.org)
        bundle = None
        if _needs_bundle(plan):
            with clock("bundle"):
                uploads = storage or _data_proxy(plane, plan, settings)
                bundle = _upload_bundle(plan, planned.graph.root_dir, uploads, settings.state, progress)
        if not built and _needs_images(plan):
            with clock("images"):
                # Tags a release or branch reads move only once the control plane took the deploy.
                images = _build_images(planned, request, progress, publish=False)
        uris = {**pinned, **_built_uris(plan, images)}
        with clock("register"):
            bundle_uri = bundle.uri if bundle else None
            sent = _sent(planned, drafts.filled(uris, bundle_uri), uris, bundle_uri, settings)
            statuses = _register(plan, settings.org, sent, plane, uris, bundle, progress, on_registered)
        deployment = _deployment(plan, plane.label, statuses, dry_run=False)
        if deployment.ok:
            _record_deploy(plane, planned, pinned, storage, settings, bundle, uris)
            images = _publish(plan, images, request, progress)
    report = _report(plan, Artifacts(bundle=bundle, images=images), deployment, clock, started_at)
    return Outcome(report=report, specs=sent.specs, triggers=sent.triggers, apps=sent.apps)


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


def _needs_bundle(plan: Plan) -> bool:
    return any(env.mode == "bundle" for env in plan.environments)


def _needs_images(plan: Plan) -> bool:
    return any(env.image.needs_build for env in plan.environments)


def _explicit_storage(plan: Plan, request: DeployRequest, progress: Progress) -> Storage | None:
    """`--storage`, when given and some environment ships its code in the bundle; otherwise bundles go
    through the control plane's data proxy (`_data_proxy`)."""
    if not _needs_bundle(plan) or request.settings.storage is None:
        return None
    from deployer.storage import S3Options, open_storage

    settings = request.settings
    return open_storage(
        settings.storage, state_dir=settings.state, s3=S3Options.from_settings(settings), progress=progress
    )


def _data_proxy(plane: ControlPlane, plan: Plan, settings: Settings) -> Storage:
    from deployer.controlplane.uploads import DataProxyStorage

    return DataProxyStorage(
        plane, project=plan.project, domain=plan.domain, org=settings.org, verify=_tls_verify(plane)
    )


def _tls_verify(plane: ControlPlane) -> Any:
    """Signed upload URLs on the control plane's own host are checked against the same CA as its API."""
    target = getattr(plane, "target", None)
    if target is None or target.insecure:
        return True
    if target.ca_cert_file_path:
        import ssl

        return ssl.create_default_context(cafile=target.ca_cert_file_path)
    return not target.insecure_skip_verify


def _planned_bundle_uri(plan: Plan, storage: Storage | None, settings: Settings) -> str | None:
    """Where the bundle will be, for a dry run: `--storage`'s object, the embedded plane's own data-proxy
    path, or a `dataproxy://` name for a remote plane (which decides at upload)."""
    digest = plan.bundle.digest if plan.bundle else None
    if digest is None or not _needs_bundle(plan):
        return None
    if storage is not None:
        return storage.uri_for(digest)
    from deployer.controlplane.uploads import embedded_bundle_uri, planned_uri

    if settings.endpoint:
        return planned_uri(settings.endpoint, plan.project, plan.domain, digest)
    return embedded_bundle_uri(settings.state, plan.project, plan.domain, digest)


def _ensure_project(plane: ControlPlane, plan: Plan, settings: Settings, progress: Progress) -> None:
    """Like Flyte's backend, a control plane refuses tasks for a project it does not have: find out first.

    The one-shot embedded plane (no endpoint: state private to this checkout) creates the project it is
    asked for and says so; a served or remote plane needs `--create-project`."""
    exists = plane.has_project(plan.project, settings.org)
    if exists is None:
        progress.warning(f"control plane {plane.label} cannot say whether project {plan.project} exists")
        return
    if exists:
        return
    if settings.create_project or plane.one_shot:
        plane.create_project(plan.project, settings.org)
        why = (
            ""
            if settings.create_project
            else " (the embedded control plane creates the projects it is deployed to)"
        )
        progress.info(f"project {plan.project}: created on {plane.label}{why}")
        return
    raise ControlPlaneError(
        f"project {plan.project} does not exist on control plane {plane.label}: create it "
        f"(`flyte create project --id {plan.project} --name {plan.project}`) or deploy with --create-project"
    )


def _dry_run(
    request: DeployRequest,
    planned: PlanResult,
    drafts: _Drafts,
    storage: Storage | None,
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
    bundle_uri = _planned_bundle_uri(plan, storage, request.settings)
    sent = _sent(planned, drafts.filled(uris, bundle_uri), uris, bundle_uri, request.settings)
    specs, triggers, apps = sent.specs, sent.triggers, sent.apps
    statuses = [
        _env_status(env, "skipped", uris, bundle_uri if env.mode == "bundle" else None, triggers=triggers)
        for env in plan.environments
    ]
    deployment = _deployment(
        plan, printable_url(request.settings.endpoint or "embedded"), statuses, dry_run=True
    )
    artifacts = Artifacts(bundle=_planned_bundle(plan, bundle_uri) if bundle_uri else None, images=images)
    report = _report(plan, artifacts, deployment, clock, started_at)
    return Outcome(report=report, specs=specs, triggers=triggers, apps=apps)


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


def _publish(
    plan: Plan, images: tuple[BuiltImage, ...], request: DeployRequest, progress: Progress
) -> tuple[BuiltImage, ...]:
    """The release/branch tags, now that the control plane holds the deploy."""
    if not images:
        return images
    from deployer.images.pipeline import publish_tags

    return publish_tags(plan, images, image_options(request), progress)


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


def _built_uris(plan: Plan, images: Sequence[BuiltImage]) -> dict[str, str]:
    """The pushed images of the environments that needed a build, by digest."""
    needed = {env.name for env in plan.environments if env.image.needs_build}
    uris = _image_uris(plan, images, pending_ok=False) if needed else {}
    return {name: uri for name, uri in uris.items() if name in needed}


def _pin_as_is_images(plan: Plan, uris: dict[str, str], progress: Progress) -> dict[str, str]:
    """Images deployed as-is are registered by the digest their tag names now, when the registry
    answers; otherwise by the tag, and the user is told."""
    from deployer.images.pinning import pin_by_digest

    pinned: dict[str, str] = {}
    resolved: dict[str, str | None] = {}
    for env in plan.environments:
        uri = uris[env.name]
        if env.image.needs_build or "@" in uri or uri.startswith("flyte-deploy.invalid/"):
            pinned[env.name] = uri
            continue
        if uri not in resolved:
            resolved[uri] = pin_by_digest(uri)
            if resolved[uri] is None:
                progress.warning(f"{uri} is deployed by tag: its registry did not answer with a digest")
        pinned[env.name] = resolved[uri] or uri
    return pinned


@dataclass
class _Drafts:
    """Every environment's task specs, serialized once with placeholder image and bundle references."""

    specs: dict[str, list[TaskSpec]]
    images: dict[str, str]
    """Placeholder image of each environment."""

    def filled(self, uris: dict[str, str], bundle_uri: str | None) -> dict[str, list[TaskSpec]]:
        from deployer.controlplane.serialize import PLACEHOLDER_BUNDLE, fill_references, image_cache_transport

        replacements = {self.images[env]: uris[env] for env in self.images}
        replacements[image_cache_transport(self.images)] = image_cache_transport(
            {e: uris[e] for e in self.images}
        )
        if bundle_uri is not None:
            replacements[PLACEHOLDER_BUNDLE] = bundle_uri
        return {env: fill_references(specs, replacements) for env, specs in self.specs.items()}


def _draft_all(planned: PlanResult, *, org: str) -> _Drafts:
    from deployer import sdk

    with sdk.git_status_once():  # every task's source link reads the same checkout
        return _draft_each(planned, org=org)


def _draft_each(planned: PlanResult, *, org: str) -> _Drafts:
    from deployer.controlplane.serialize import PLACEHOLDER_BUNDLE, placeholder_image, task_specs

    plan = planned.plan
    digest = plan.bundle.digest if plan.bundle else None
    images = {env.name: placeholder_image(i) for i, env in enumerate(plan.environments)}
    specs: dict[str, list[TaskSpec]] = {}
    for env in plan.environments:
        if env.kind != "task":
            continue
        in_bundle = env.mode == "bundle"
        specs[env.name] = task_specs(
            planned.graph.env(env.name).env,
            version=plan.version,
            project=plan.project,
            domain=plan.domain,
            org=org,
            root_dir=Path(planned.graph.root_dir),
            image_uri=images[env.name],
            bundle_uri=PLACEHOLDER_BUNDLE if in_bundle else None,
            bundle_digest=digest if in_bundle else None,
            image_lookup=images,
            sys_paths=planned.graph.sys_paths or None,
        )
    return _Drafts(specs=specs, images=images)


# ---------------------------------------------------------------------------------------------- register


@dataclass(frozen=True)
class _Held:
    statuses: list[EnvDeployment]
    bundle: BundleArtifact | None
    images: dict[str, str]
    """The image of each environment, as registered."""


def _deploy_fingerprint(
    planned: PlanResult, pinned: dict[str, str], storage: Storage | None, settings: Settings
) -> str:
    from deployer import sdk
    from deployer.controlplane.registration import fingerprint

    plan = planned.plan
    images = {
        env.name: (f"build:{env.image.spec_id}" if env.image.needs_build else pinned[env.name])
        for env in plan.environments
    }
    images["<bundle storage>"] = storage.url if storage is not None else "data proxy"
    images["<registry>"] = plan.registry or ""
    with sdk.git_status_once():
        source = sdk.git_source_identity()
    return fingerprint(
        plan,
        org=settings.org,
        images=images,
        code_files=planned.graph.loaded_files,
        root_dir=Path(planned.graph.root_dir),
        sys_paths=planned.graph.sys_paths,
        source_identity=source,
    )


def _held_deploy(
    plane: ControlPlane,
    planned: PlanResult,
    pinned: dict[str, str],
    storage: Storage | None,
    settings: Settings,
) -> _Held | None:
    """The deploy, when the plane holds exactly it already (receipt + one bulk listing); else None."""
    from deployer.controlplane.registration import Receipts, already_deployed, held_tasks
    from deployer.registration import as_deployed

    plan = planned.plan
    receipt = Receipts(settings.state).read(
        plane.label, settings.org, plan.project, plan.domain, plan.version
    )
    if receipt is None:
        return None
    expected = _deploy_fingerprint(planned, pinned, storage, settings)
    names = [task for env in plan.environments for task in env.tasks]
    if not already_deployed(receipt, expected, names, held_tasks(plane, plan, settings.org)):
        return None
    apps: dict[str, AppDeployment] = {}
    for env in plan.environments:
        if env.app is not None:
            stored = plane.get_app(plan.project, plan.domain, settings.org, env.app.name)
            if stored is None:
                return None  # an app deleted since: the full path creates it again
            apps[env.name] = as_deployed(stored, name=env.app.name)  # its revision and URL, as held
    planned_bundle = _planned_bundle(plan, receipt.bundle_uri) if _needs_bundle(plan) else None
    bundle = planned_bundle.model_copy(update={"reused": True}) if planned_bundle else None
    statuses = [
        _env_status(
            env,
            "unchanged",
            dict(receipt.images),
            receipt.bundle_uri if env.mode == "bundle" else None,
            app=apps.get(env.name),
        )
        for env in plan.environments
    ]
    return _Held(statuses=statuses, bundle=bundle, images=dict(receipt.images))


def _with_held_triggers(held: _Held, plane: ControlPlane, plan: Plan, org: str, progress: Progress) -> _Held:
    """The held deploy with its triggers as the plane holds them (paused since by the SDK, say), in task
    order as a registered deploy reports them."""
    from deployer.registration import as_held, trigger_state

    if not any(status.triggers for status in held.statuses):
        return held  # nothing to read back
    state = trigger_state(plane, plan, org, progress)
    statuses = [
        s.model_copy(update={"triggers": tuple(sorted(as_held(s.triggers, state), key=lambda t: t.task))})
        for s in held.statuses
    ]
    return _Held(statuses=statuses, bundle=held.bundle, images=held.images)


def _has_triggers_or_apps(plan: Plan) -> bool:
    return any(env.triggers or env.app is not None for env in plan.environments)


def _record_deploy(
    plane: ControlPlane,
    planned: PlanResult,
    pinned: dict[str, str],
    storage: Storage | None,
    settings: Settings,
    bundle: BundleArtifact | None,
    uris: dict[str, str],
) -> None:
    from deployer.controlplane.registration import Receipt, Receipts

    plan = planned.plan
    receipt = Receipt(
        fingerprint=_deploy_fingerprint(planned, pinned, storage, settings),
        tasks=tuple(task for env in plan.environments for task in env.tasks),
        bundle_uri=bundle.uri if bundle else None,
        images=dict(uris),
    )
    Receipts(settings.state).write(
        plane.label, settings.org, plan.project, plan.domain, plan.version, receipt
    )


@dataclass(frozen=True)
class _Sent:
    """What registration sends: task specs by environment, triggers by task, apps by environment."""

    specs: dict[str, list[TaskSpec]]
    triggers: dict[str, list[TaskTrigger]]
    apps: dict[str, App]


def _sent(
    planned: PlanResult,
    specs: dict[str, list[TaskSpec]],
    uris: dict[str, str],
    bundle_uri: str | None,
    settings: Settings,
) -> _Sent:
    """What registration sends: the task specs, their triggers (SDK serialization, the trigger policy
    applied) and the apps (the SDK's app translation), all refused here if the plane would refuse them."""
    from deployer.registration import serialize_apps, serialize_triggers

    triggers = serialize_triggers(planned, specs)
    return _Sent(specs, triggers, serialize_apps(planned, uris, bundle_uri, org=settings.org))


def _register(
    plan: Plan,
    org: str,
    sent: _Sent,
    plane: ControlPlane,
    uris: dict[str, str],
    bundle: BundleArtifact | None,
    progress: Progress,
    on_registered: EnvRegistered | None,
) -> list[EnvDeployment]:
    from deployer.controlplane.registration import held_tasks, refuse_conflicts, run_by_level
    from deployer.registration import register_app, register_tasks

    bundle_uri = bundle.uri if bundle else None
    held = held_tasks(plane, plan, org)
    unchanged = refuse_conflicts(plane, plan, org, sent.specs, held)

    def job(env: PlannedEnv) -> tuple[EnvStatus, str, AppDeployment | None]:
        if env.kind == "app":
            status, app = register_app(plane, sent.apps[env.name], plan)
            return status, f"app {app.name}" + (f" revision {app.revision}" if app.revision else ""), app
        outcomes = register_tasks(plane, sent.specs[env.name], sent.triggers, unchanged=unchanged)
        status = "registered" if "registered" in outcomes else "unchanged"
        return status, f"{_count(len(outcomes), 'task')}, version {plan.version}", None

    done: dict[str, EnvDeployment] = {}

    def on_env(
        env: PlannedEnv, result: tuple[EnvStatus, str, AppDeployment | None] | None, error: str | None
    ) -> None:
        env_bundle = bundle_uri if env.mode == "bundle" else None
        if result is None:
            done[env.name] = _env_status(env, "failed", uris, env_bundle, error=error)
            progress.info(f"{env.name}: failed: {error}")
            return
        status, what, app = result
        done[env.name] = _env_status(env, status, uris, env_bundle, triggers=sent.triggers, app=app)
        progress.info(f"{env.name}: {status} ({what})")
        if on_registered is not None:
            on_registered(done[env.name])

    run_by_level(plane, plan, job, on_env)
    statuses = [
        done.get(env.name) or _env_status(env, "skipped", uris, bundle_uri if env.mode == "bundle" else None)
        for env in plan.environments
    ]
    return _settle_triggers(plan, org, sent, plane, statuses, progress)


def _settle_triggers(
    plan: Plan,
    org: str,
    sent: _Sent,
    plane: ControlPlane,
    statuses: list[EnvDeployment],
    progress: Progress,
) -> list[EnvDeployment]:
    """Remove the registered tasks' triggers the code no longer has; report each trigger as the plane
    holds it."""
    from deployer.registration import env_triggers, settle_triggers

    registered = {s.name for s in statuses if s.status in ("registered", "unchanged") and s.kind == "task"}
    tasks = {t for env in plan.environments if env.name in registered for t in _task_names(sent, env.name)}
    if not tasks:
        return statuses
    settled, removed = settle_triggers(
        plane, plan, org, {t: sent.triggers.get(t, []) for t in sorted(tasks)}, progress
    )
    by_name = {env.name: env for env in plan.environments}
    out: list[EnvDeployment] = []
    for status in statuses:
        if status.name in registered:
            names = set(_task_names(sent, status.name))
            status = status.model_copy(
                update={
                    "triggers": env_triggers(by_name[status.name], settled),
                    "removed_triggers": tuple(r for r in removed if r.split("/", 1)[0] in names),
                }
            )
        out.append(status)
    return out


def _task_names(sent: _Sent, env_name: str) -> list[str]:
    return [spec.task_template.id.name for spec in sent.specs.get(env_name, ())]


def _probe(plane: ControlPlane, plan: Plan, org: str) -> None:
    """One cheap read, so an unreachable or refusing control plane fails the deploy before any build."""
    for env in plan.environments:
        if env.tasks:
            plane.get_task(plan.project, plan.domain, org, env.tasks[0], plan.version)
            return
        if env.app is not None:
            plane.get_app(plan.project, plan.domain, org, env.app.name)
            return


# ---------------------------------------------------------------------------------------------- helpers


def _env_status(
    env: PlannedEnv,
    status: EnvStatus,
    uris: dict[str, str],
    bundle_uri: str | None,
    *,
    error: str | None = None,
    triggers: dict[str, list[TaskTrigger]] | None = None,
    app: AppDeployment | None = None,
) -> EnvDeployment:
    """An environment's status; its triggers as sent (registration replaces them with the plane's)."""
    sent = triggers or {}
    shown = tuple(
        TriggerDeployment(task=t.task, name=t.name, schedule=t.schedule, active=_sent_active(t, sent))
        for t in env.triggers
    )
    if app is None and env.app is not None:
        app = AppDeployment(name=env.app.name)
    return EnvDeployment(
        name=env.name,
        tasks=env.tasks,
        status=status,
        image=uris.get(env.name),
        bundle_uri=bundle_uri if env.mode == "bundle" else None,
        error=error,
        kind=env.kind,
        triggers=shown,
        app=app,
    )


def _sent_active(planned: PlannedTrigger, sent: dict[str, list[TaskTrigger]]) -> bool:
    match = next((t for t in sent.get(planned.task, ()) if t.name == planned.name), None)
    return match.spec.active if match is not None else planned.active


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

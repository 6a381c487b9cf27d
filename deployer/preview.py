"""Removing a closed pull request's preview: its `pr-N` registry tags and its control-plane versions.

- registry: the `pr-N` tag of every image the preview pushed (on any registry: one that deletes only
  whole manifests gets the tag moved onto a tombstone first), and the images of the PR's superseded
  pushes that no tag but the preview's own names. The last push's image stays: a release of the merged
  code promotes it rather than building it again, and an image a branch or a release uses is never
  deleted;
- control plane: the triggers pointing at a task version with the preview's version prefix and the apps
  labelled with such a version (deleted through TriggerService and AppService, on any plane that serves
  them), then every task version carrying the prefix, where the plane can delete (the embedded one;
  Flyte's TaskService has no delete, so a remote plane keeps them).

The GitHub side (deployments, the sticky comment) is `deployer.report.preview`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flyteidl2.common import identifier_pb2

from deployer.apps import VERSION_LABEL
from deployer.controlplane.base import ControlPlane, DeletedVersions, Unsupported
from deployer.errors import ControlPlaneError, DeployError, RegistryError, UsageError
from deployer.images.tags import IDENTITY_PREFIX
from deployer.progress import QUIET, Progress
from deployer.report.models import CleanupResult
from deployer.request import DeployRequest

if TYPE_CHECKING:
    from deployer.images.registry import RegistryClient

DEFAULT_VERSION_PREFIX = "pr-{pr}-"
_SHA = re.compile(r"[0-9a-f]{40}")


def preview_tag(pr: int) -> str:
    return f"pr-{pr}"


def version_prefix(template: str, pr: int, *, domain: str) -> str:
    """The preview's version prefix: `{pr}` replaced. The prefix or the domain must name the PR, or a
    cleanup would remove other pull requests' previews."""
    prefix = template.replace("{pr}", str(pr))
    if "{" in prefix:
        raise UsageError(f"--version-prefix {template!r}: only the {{pr}} placeholder is known")
    if "{pr}" not in template and "{pr}" not in domain:
        raise UsageError(
            f"--version-prefix {template!r} and --domain {domain!r}: one of them must contain {{pr}}, "
            "or the cleanup would remove other pull requests' previews"
        )
    return prefix


def clean_up(
    request: DeployRequest,
    pr: int,
    *,
    prefix: str,
    head: str | None = None,
    shas: Iterable[str] = (),
    repositories: Iterable[str] = (),
    progress: Progress = QUIET,
) -> CleanupResult:
    """`cleanup_preview` against the control plane the request's settings name."""
    from deployer.controlplane import open_control_plane

    with open_control_plane(request.settings) as plane:
        return cleanup_preview(
            request,
            plane,
            pr,
            prefix=prefix,
            head=head,
            shas=shas,
            repositories=repositories,
            progress=progress,
        )


def cleanup_preview(
    request: DeployRequest,
    plane: ControlPlane,
    pr: int,
    *,
    prefix: str,
    head: str | None = None,
    shas: Iterable[str] = (),
    repositories: Iterable[str] = (),
    progress: Progress = QUIET,
) -> CleanupResult:
    """Remove what the preview of `pr` left in the registry and the control plane.

    `request` names the preview's target (project, domain, registry) and, with a selection, the project
    whose images were pushed. `head`: the PR's last commit, whose images stay (a release of the merged
    code promotes them); without it no image is deleted, only the `pr-N` tags. `shas`/`repositories`:
    commits and image repositories known to belong to the preview from elsewhere (GitHub deployment
    payloads)."""
    settings = request.settings
    warnings: list[str] = []
    preview_shas = set(shas)
    repos = {_repository(r) for r in repositories}
    repos |= _planned_repositories(request, warnings)

    triggers = _drop_triggers(request, plane, prefix, warnings, progress)
    apps = _drop_apps(request, plane, prefix, warnings, progress)
    deleted, kept = _drop_versions(request, plane, prefix, progress)
    for version in deleted.versions:
        head = version[len(prefix) : len(prefix) + 40]
        if _SHA.fullmatch(head):
            preview_shas.add(head)
    if settings.registry:
        registry_prefix = settings.registry.rstrip("/").lower() + "/"
        repos |= {_repository(image) for image in deleted.images if image.lower().startswith(registry_prefix)}

    superseded = preview_shas - {head} if head else set()
    removed, missing, images = _drop_tags(sorted(repos), pr, head, superseded, request, warnings, progress)
    return CleanupResult(
        pr=pr,
        project=settings.project,
        domain=settings.domain,
        removed_tags=tuple(removed),
        missing_tags=tuple(missing),
        removed_images=tuple(images),
        removed_versions=deleted.versions,
        removed_tasks=deleted.tasks,
        removed_triggers=triggers,
        removed_apps=apps,
        control_plane="embedded" if settings.endpoint is None else plane.label,
        versions_kept=kept,
        warnings=tuple(warnings),
    )


def _planned_repositories(request: DeployRequest, warnings: list[str]) -> set[str]:
    """The repositories a deploy of the request's selection pushes to (rendered, never built)."""
    if request.selection.path is None or not request.settings.registry:
        return set()
    from deployer.images.options import ImageOptions
    from deployer.images.pipeline import render_groups
    from deployer.plan import plan_request

    try:
        result = plan_request(request)
        options = ImageOptions.from_settings(request.settings)
        return {group.repository for group in render_groups(result.plan, result.graph, options)}
    except DeployError as exc:
        warnings.append(f"could not plan {request.selection.path} to find the preview's images: {exc}")
        return set()


def _drop_triggers(
    request: DeployRequest, plane: ControlPlane, prefix: str, warnings: list[str], progress: Progress
) -> tuple[str, ...]:
    """The triggers whose task version is the preview's: a trigger is kept per task name, so one that a
    later deploy pointed at another version is not the preview's any more and stays."""
    s = request.settings
    try:
        live = plane.list_triggers(s.project, s.domain, s.org)
        names = []
        for trigger in live:
            n = trigger.id.name
            details = plane.get_trigger(s.project, s.domain, s.org, n.task_name, n.name)
            if details is not None and details.spec.task_version.startswith(prefix):
                names.append(
                    identifier_pb2.TriggerName(
                        org=s.org, project=s.project, domain=s.domain, task_name=n.task_name, name=n.name
                    )
                )
        plane.delete_triggers(names)
    except ControlPlaneError as exc:
        warnings.append(f"could not remove the preview's triggers: {exc}")
        return ()
    removed = tuple(sorted(f"{n.task_name}/{n.name}" for n in names))
    if removed:
        progress.info(f"removed trigger(s) {', '.join(removed)} from {plane.label}")
    return removed


def _drop_apps(
    request: DeployRequest, plane: ControlPlane, prefix: str, warnings: list[str], progress: Progress
) -> tuple[str, ...]:
    """The apps a deploy of the preview last updated (labelled with a version carrying its prefix)."""
    s = request.settings
    removed: list[str] = []
    try:
        for app in plane.list_apps(s.project, s.domain, s.org):
            ours = app.metadata.labels.get(VERSION_LABEL, "").startswith(prefix)
            if ours and plane.delete_app(s.project, s.domain, s.org, app.metadata.id.name):
                removed.append(app.metadata.id.name)
    except ControlPlaneError as exc:
        warnings.append(f"could not remove the preview's apps: {exc}")
    if removed:
        progress.info(f"removed app(s) {', '.join(removed)} from {plane.label}")
    return tuple(sorted(removed))


def _drop_versions(
    request: DeployRequest, plane: ControlPlane, prefix: str, progress: Progress
) -> tuple[DeletedVersions, bool]:
    """What was deleted, and whether the plane had to keep the versions."""
    settings = request.settings
    try:
        deleted = plane.delete_versions(settings.project, settings.domain, settings.org, prefix)
    except Unsupported:
        progress.info(f"the preview's versions stay on {plane.label}: it cannot delete task versions")
        return DeletedVersions(), True
    if deleted.versions:
        count = len(deleted.versions)
        progress.info(f"removed {deleted.tasks} task(s) in {count} preview version(s) from {plane.label}")
    return deleted, False


def _drop_tags(
    repos: list[str],
    pr: int,
    head: str | None,
    superseded: set[str],
    request: DeployRequest,
    warnings: list[str],
    progress: Progress,
) -> tuple[list[str], list[str], list[str]]:
    """Untag `pr-N` everywhere, and delete the images of superseded pushes that nothing else uses.

    The last push's image stays, with its `sha-`/`build-` tags: a release of the merged code promotes
    it instead of building again. (tags removed, tags already gone, superseded images removed)"""
    if not repos:
        return [], [], []
    from deployer.images.options import ImageOptions
    from deployer.images.registry import DeleteResult, RegistryClient

    removed: list[str] = []
    missing: list[str] = []
    images: list[str] = []
    tag = preview_tag(pr)
    options = ImageOptions.from_settings(request.settings)
    with RegistryClient(options.credentials(), insecure_hosts=options.insecure_registries) as registry:
        for repo in repos:
            try:
                result = registry.untag(repo, tag)
            except RegistryError as exc:
                warnings.append(f"could not delete {repo}:{tag}: {exc}")
                continue
            if result is DeleteResult.missing:
                missing.append(f"{repo}:{tag}")
            else:
                removed.append(f"{repo}:{tag}")
                progress.info(f"deleted {repo}:{tag}")
            if superseded:
                images += _drop_superseded(registry, repo, head, superseded, warnings, progress)
    return removed, missing, images


def _drop_superseded(
    registry: RegistryClient,
    repo: str,
    head: str | None,
    superseded: set[str],
    warnings: list[str],
    progress: Progress,
) -> list[str]:
    """Delete the images of the PR's earlier pushes when only the preview's own tags name them."""
    try:
        by_tag = {t: registry.manifest_digest(repo, t) for t in registry.list_tags(repo)}
    except RegistryError as exc:
        warnings.append(f"could not list the tags of {repo}: {exc}")
        return []
    own = {f"sha-{sha[:7]}" for sha in superseded}
    keep = {d for t, d in by_tag.items() if head and _is_own(t, {f"sha-{head[:7]}"})}
    deleted: list[str] = []
    for digest in sorted({d for t, d in by_tag.items() if d and _is_own(t, own)} - keep):
        tags = sorted(t for t, d in by_tag.items() if d == digest)
        foreign = [t for t in tags if not (t.startswith(IDENTITY_PREFIX) or _is_own(t, own))]
        if foreign:
            warnings.append(
                f"kept {repo}@{digest} of an earlier push: it is also tagged {', '.join(foreign)}"
            )
            continue
        try:
            registry.delete_tag(repo, tags[0], delete_shared_manifest=True)
        except RegistryError as exc:
            warnings.append(f"could not delete {repo}@{digest}: {exc}")
            continue
        deleted.append(f"{repo}@{digest}")
        progress.info(f"deleted {repo}@{digest} (an earlier push of the preview: {', '.join(tags)})")
    return deleted


def _is_own(tag: str, own_tags: set[str]) -> bool:
    # A dirty preview build is tagged `sha-<7>-dirty-<hash>`; a derived image `sha-<7>-<env>`.
    return any(tag == own or tag.startswith(own + "-") for own in own_tags)


def _repository(reference: str) -> str:
    """`host/path@sha256:...` or `host/path:tag` → `host/path`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name

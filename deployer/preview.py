"""Removing a closed pull request's preview: its `pr-N` registry tags and its control-plane versions.

- registry: the `pr-N` tag of every image the preview pushed. Registries that cannot delete a tag
  alone (distribution 2.x deletes whole manifests) lose the manifest only when every other tag on it
  belongs to the preview too (its identity and commit tags): an image a branch or a release also
  uses is never deleted;
- control plane: every task version carrying the preview's version prefix, where the plane can delete
  (the embedded one; Flyte's TaskService has no delete, so a remote plane keeps them).

The GitHub side (deployments, the sticky comment) is `deployer.report.preview`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from deployer.controlplane.base import ControlPlane, DeletedVersions, Unsupported
from deployer.errors import DeployError, RegistryError, UsageError
from deployer.images.tags import IDENTITY_PREFIX
from deployer.progress import QUIET, Progress
from deployer.report.models import CleanupResult
from deployer.request import DeployRequest

if TYPE_CHECKING:
    from deployer.images.registry import DeleteResult, RegistryClient

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
    shas: Iterable[str] = (),
    repositories: Iterable[str] = (),
    progress: Progress = QUIET,
) -> CleanupResult:
    """`cleanup_preview` against the control plane the request's settings name."""
    from deployer.controlplane import open_control_plane

    with open_control_plane(request.settings) as plane:
        return cleanup_preview(
            request, plane, pr, prefix=prefix, shas=shas, repositories=repositories, progress=progress
        )


def cleanup_preview(
    request: DeployRequest,
    plane: ControlPlane,
    pr: int,
    *,
    prefix: str,
    shas: Iterable[str] = (),
    repositories: Iterable[str] = (),
    progress: Progress = QUIET,
) -> CleanupResult:
    """Remove what the preview of `pr` left in the registry and the control plane.

    `request` names the preview's target (project, domain, registry) and, with a selection, the project
    whose images were pushed. `shas`/`repositories`: commits and image repositories known to belong to
    the preview from elsewhere (GitHub deployment payloads)."""
    settings = request.settings
    warnings: list[str] = []
    preview_shas = set(shas)
    repos = {_repository(r) for r in repositories}
    repos |= _planned_repositories(request, warnings)

    deleted, kept = _drop_versions(request, plane, prefix, progress)
    for version in deleted.versions:
        head = version[len(prefix) : len(prefix) + 40]
        if _SHA.fullmatch(head):
            preview_shas.add(head)
    if settings.registry:
        registry_prefix = settings.registry.rstrip("/").lower() + "/"
        repos |= {_repository(image) for image in deleted.images if image.lower().startswith(registry_prefix)}

    removed, missing = _drop_tags(sorted(repos), preview_tag(pr), preview_shas, request, warnings, progress)
    return CleanupResult(
        pr=pr,
        project=settings.project,
        domain=settings.domain,
        removed_tags=tuple(removed),
        missing_tags=tuple(missing),
        removed_versions=deleted.versions,
        removed_tasks=deleted.tasks,
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
    tag: str,
    shas: set[str],
    request: DeployRequest,
    warnings: list[str],
    progress: Progress,
) -> tuple[list[str], list[str]]:
    if not repos:
        return [], []
    from deployer.images.options import ImageOptions
    from deployer.images.registry import DeleteResult, RegistryClient

    removed: list[str] = []
    missing: list[str] = []
    own_tags = {f"sha-{sha[:7]}" for sha in shas}
    options = ImageOptions.from_settings(request.settings)
    with RegistryClient(options.credentials(), insecure_hosts=options.insecure_registries) as registry:
        for repo in repos:
            reference = f"{repo}:{tag}"
            try:
                result = registry.delete_tag(repo, tag)
                if result is DeleteResult.shared:
                    result = _drop_shared(registry, repo, tag, own_tags, warnings)
            except RegistryError as exc:
                warnings.append(f"could not delete {reference}: {exc}")
                continue
            if result is DeleteResult.missing:
                missing.append(reference)
            elif result is not DeleteResult.shared:
                removed.append(reference)
                progress.info(f"deleted {reference}")
    return removed, missing


def _drop_shared(
    registry: RegistryClient, repo: str, tag: str, own_tags: set[str], warnings: list[str]
) -> DeleteResult:
    from deployer.images.registry import DeleteResult

    digest = registry.manifest_digest(repo, tag)
    if digest is None:
        return DeleteResult.missing
    others = [t for t in registry.list_tags(repo) if t != tag and registry.manifest_digest(repo, t) == digest]
    foreign = [t for t in others if not (t.startswith(IDENTITY_PREFIX) or _is_own(t, own_tags))]
    if foreign:
        warnings.append(
            f"kept {repo}:{tag}: the registry can only delete the whole image, which is also tagged "
            + ", ".join(sorted(foreign))
        )
        return DeleteResult.shared
    return registry.delete_tag(repo, tag, delete_shared_manifest=True)


def _is_own(tag: str, own_tags: set[str]) -> bool:
    # A dirty preview build is tagged `sha-<7>-dirty-<hash>`.
    return any(tag == own or tag.startswith(own + "-dirty-") for own in own_tags)


def _repository(reference: str) -> str:
    """`host/path@sha256:...` or `host/path:tag` → `host/path`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name

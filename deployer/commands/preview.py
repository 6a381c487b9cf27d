"""`flyte-deploy preview cleanup --pr N`: remove a closed pull request's preview.

- registry: the `pr-N` tag of every image the preview pushed. Registries that cannot delete a tag
  alone (distribution 2.x deletes whole manifests) lose the manifest only when every other tag on it
  belongs to the preview too (its identity and commit tags): an image a branch or a release also
  uses is never deleted;
- embedded control plane: every task version carrying the preview's version prefix (Flyte's task
  service has no delete RPC, so a remote control plane keeps them);
- GitHub (when a token and repository are configured): the `preview/pr-N` deployments become
  inactive and the sticky comment says the preview is gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import typer

from deployer.commands import options as o
from deployer.errors import DeployError, RegistryError, UsageError
from deployer.images.tags import IDENTITY_PREFIX
from deployer.models import CopyStyle, DeployRequest, Mode
from deployer.output import progress as default_progress
from deployer.report.models import CleanupResult

if TYPE_CHECKING:
    from deployer.images.registry import DeleteResult, RegistryClient

app = typer.Typer(help="PR preview deploys: clean up a closed PR's preview.", no_args_is_help=True)

DEFAULT_VERSION_PREFIX = "pr-{pr}-"
_SHA = re.compile(r"[0-9a-f]{40}")


def preview_tag(pr: int) -> str:
    return f"pr-{pr}"


def cleanup_preview(
    request: DeployRequest,
    pr: int,
    *,
    version_prefix: str,
    shas: Iterable[str] = (),
    repositories: Iterable[str] = (),
    progress: Callable[[str], None] = default_progress,
) -> CleanupResult:
    """Remove what the preview of `pr` left in the registry and the embedded control plane.

    `request` names the preview's target (project, domain, registry, state dir, endpoint) and, with
    `path`, the project whose images were pushed. `shas`/`repositories`: commits and image repositories
    known to belong to the preview from elsewhere (GitHub deployment payloads)."""
    warnings: list[str] = []
    preview_shas = set(shas)
    repos = {_repository(r) for r in repositories}
    repos |= _planned_repositories(request, warnings)

    versions, removed_tasks, stored_images = _drop_versions(request, version_prefix, progress)
    for version in versions:
        head = version[len(version_prefix) : len(version_prefix) + 40]
        if _SHA.fullmatch(head):
            preview_shas.add(head)
    if request.registry:
        prefix = request.registry.rstrip("/").lower() + "/"
        repos |= {_repository(image) for image in stored_images if image.lower().startswith(prefix)}

    removed, missing = _drop_tags(
        sorted(repos), preview_tag(pr), preview_shas, request.registry, warnings, progress
    )
    return CleanupResult(
        pr=pr,
        project=request.project,
        domain=request.domain,
        removed_tags=tuple(removed),
        missing_tags=tuple(missing),
        removed_versions=tuple(versions),
        removed_tasks=removed_tasks,
        control_plane="embedded" if request.endpoint is None else request.endpoint,
        warnings=tuple(warnings),
    )


def _planned_repositories(request: DeployRequest, warnings: list[str]) -> set[str]:
    """The repositories a deploy of `request.path` pushes to (rendered, never built)."""
    if request.path is None or not request.registry:
        return set()
    from deployer.images.pipeline import render_groups
    from deployer.pipeline import image_options
    from deployer.plan import plan_request

    try:
        result = plan_request(request)
        return {
            group.repository for group in render_groups(result.plan, result.graph, image_options(request))
        }
    except DeployError as exc:
        warnings.append(f"could not plan {request.path} to find the preview's images: {exc}")
        return set()


def _drop_versions(
    request: DeployRequest, version_prefix: str, progress: Callable[[str], None]
) -> tuple[list[str], int, set[str]]:
    """Delete the preview's versions from the embedded control plane: (versions, tasks, their images)."""
    if request.endpoint is not None:
        return [], 0, set()
    from deployer.controlplane.store import DB_NAME, TaskStore
    from deployer.pipeline import state_dir_for

    state_dir = state_dir_for(request)
    if not (state_dir / DB_NAME).is_file():
        return [], 0, set()
    store = TaskStore(state_dir)
    scope = {"org": request.org, "project": request.project, "domain": request.domain}
    versions: set[str] = set()
    images: set[str] = set()
    for latest in store.latest_tasks(**scope):
        for stored in store.versions(**scope, name=latest.key.name):
            if stored.key.version.startswith(version_prefix):
                versions.add(stored.key.version)
                image = stored.spec.task_template.container.image
                if image:
                    images.add(image)
    removed = 0
    for version in sorted(versions):
        removed += store.delete_version(request.project, request.domain, version, org=request.org)
    if versions:
        progress(f"removed {removed} task(s) in {len(versions)} preview version(s) from {state_dir}")
    return sorted(versions), removed, images


def _drop_tags(
    repos: list[str],
    tag: str,
    shas: set[str],
    push_registry: str | None,
    warnings: list[str],
    progress: Callable[[str], None],
) -> tuple[list[str], list[str]]:
    if not repos:
        return [], []
    from deployer.images.auth import Credentials
    from deployer.images.registry import DeleteResult, RegistryClient

    removed: list[str] = []
    missing: list[str] = []
    own_tags = {f"sha-{sha[:7]}" for sha in shas}
    with RegistryClient(Credentials.from_env(push_registry)) as registry:
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
                progress(f"deleted {reference}")
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


@app.command("cleanup")
def cleanup(
    pr: int = typer.Option(..., "--pr", min=1, help="Pull request number."),
    path: o.PathArg = None,
    env_var: o.VarArg = None,
    all_envs: o.AllOpt = False,
    recursive: o.RecursiveOpt = False,
    root_dir: o.RootDirOpt = None,
    copy_style: o.CopyStyleOpt = CopyStyle.loaded_modules,
    mode: o.ModeOpt = Mode.auto,
    project: o.ProjectOpt = "flytesnacks",
    domain: o.DomainOpt = "development",
    org: o.OrgOpt = "",
    registry: o.RegistryOpt = None,
    image: o.ImageOpt = None,
    base_image_mirror: o.MirrorOpt = None,
    endpoint: o.EndpointOpt = None,
    state_dir: o.StateDirOpt = None,
    version_prefix: str = typer.Option(
        DEFAULT_VERSION_PREFIX,
        "--version-prefix",
        help="Prefix of the preview's versions ({pr} is replaced), as the deploy used it.",
    ),
    repository: list[str] | None = typer.Option(
        None,
        "--repository",
        help="Image repository the preview pushed to (besides those PATH plans). Repeatable.",
    ),
    as_json: o.JsonOpt = False,
) -> None:
    """Delete the registry tags `pr-N`, drop the preview's versions from the embedded control plane,
    and (with GITHUB_TOKEN and GITHUB_REPOSITORY set) mark its GitHub deployments inactive and update
    the sticky comment. Give PATH (as for deploy) so the preview's image repositories can be planned."""
    prefix = version_prefix.replace("{pr}", str(pr))
    if "{" in prefix:
        raise UsageError(f"--version-prefix {version_prefix!r}: only the {{pr}} placeholder is known")
    if "{pr}" not in version_prefix and "{pr}" not in domain:
        raise UsageError(
            f"--version-prefix {version_prefix!r} and --domain {domain!r}: one of them must contain {{pr}}, "
            "or the cleanup would remove other pull requests' previews"
        )
    request = o.build_request(
        path=path,
        env_var=env_var,
        all_envs=all_envs,
        recursive=recursive,
        root_dir=root_dir,
        copy_style=copy_style,
        mode=mode,
        project=project,
        domain=domain.replace("{pr}", str(pr)),
        org=org,
        registry=registry,
        images=image,
        base_image_mirrors=base_image_mirror,
        endpoint=endpoint,
        state_dir=state_dir,
    )
    from deployer.report.github import GitHubReporter, GitHubSettings
    from deployer.report.preview import finish_cleanup, recorded_preview

    reporter = None
    token, repo_name = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
    if token and repo_name:
        api_url = os.environ.get("GITHUB_API_URL") or GitHubSettings.api_url
        settings = GitHubSettings(repo_name, token, api_url=api_url)
        reporter = GitHubReporter(settings, warn=lambda m: typer.echo(f"warning: {m}", err=True))
    result = cleanup_preview(
        request,
        pr,
        version_prefix=prefix,
        shas=recorded_preview(reporter, pr).shas,
        repositories=repository or (),
    )
    if reporter is not None:
        result = finish_cleanup(reporter, result, run=None)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    for line in (
        *(f"deleted {t}" for t in result.removed_tags),
        *(f"already gone {t}" for t in result.missing_tags),
        f"{result.removed_tasks} task version(s) removed from the {result.control_plane} control plane"
        if result.control_plane == "embedded"
        else f"versions on {result.control_plane} kept (Flyte has no delete)",
    ):
        typer.echo(line)

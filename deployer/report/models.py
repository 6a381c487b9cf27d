"""What the report stage needs besides the pipeline's `Report`: why this run happened, and cleanups."""

from __future__ import annotations

import enum

from deployer.models import Model


class RunKind(enum.StrEnum):
    preview = "preview"
    """A pull request: deployed under its own preview target."""
    release = "release"
    """A semver tag: images promoted, deployed to the production target."""
    branch = "branch"
    """A push to the default branch: the commit's version deployed."""
    build_only = "build-only"
    """Built, but nothing pushed, uploaded or deployed (fork PR, read-only token, `push: false`)."""
    cleanup = "cleanup"
    """A closed pull request: its preview removed."""
    skipped = "skipped"
    """An event this action does nothing for."""


class RunInfo(Model):
    """The CI context a report is rendered for."""

    kind: RunKind
    event: str | None = None
    pr: int | None = None
    sha: str | None = None
    ref: str | None = None
    note: str | None = None
    """Why the run was build-only or skipped, in one sentence."""
    error: str | None = None
    """The one-line error that failed the run."""
    preview_url: str | None = None
    run_url: str | None = None
    """Link to the workflow run's logs."""
    commit_url: str | None = None


class CleanupResult(Model):
    """What `flyte-deploy preview cleanup --pr N` removed."""

    pr: int
    project: str
    domain: str
    removed_tags: tuple[str, ...] = ()
    """`repository:pr-N` references deleted from the registry."""
    missing_tags: tuple[str, ...] = ()
    """References that were already gone."""
    removed_images: tuple[str, ...] = ()
    """`repository@digest` of the PR's superseded pushes, deleted (nothing else used them)."""
    removed_versions: tuple[str, ...] = ()
    """Preview versions dropped from the embedded control plane."""
    removed_tasks: int = 0
    removed_triggers: tuple[str, ...] = ()
    """`task/trigger` names of the preview's triggers deleted from the control plane."""
    removed_apps: tuple[str, ...] = ()
    """Names of the preview's apps deleted from the control plane."""
    control_plane: str = "embedded"
    versions_kept: bool = False
    """The plane cannot delete task versions (a Flyte backend: flyteidl2 has no delete), so they stay."""
    """`embedded`, or the endpoint of a remote control plane (Flyte has no delete: versions stay)."""
    deactivated_deployments: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()

"""Frozen models that flow between pipeline stages (DESIGN.md: data flows one way).

Each stage module owns the models it *produces*; the ones that cross stage boundaries live here so
every stage can import them without importing another stage. Stages may add optional fields to the
models they produce; renaming or removing a field is a contract change.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CopyStyle(enum.StrEnum):
    loaded_modules = "loaded_modules"
    auto = "auto"
    all = "all"
    none = "none"

    def resolved(self) -> CopyStyle:
        """`auto` is Flyte's alias for `loaded_modules`."""
        return CopyStyle.loaded_modules if self is CopyStyle.auto else self


class Mode(enum.StrEnum):
    auto = "auto"
    container = "container"
    bundle = "bundle"


DeployMode = Literal["container", "bundle"]
EnvKind = Literal["task", "app"]
"""A `flyte.TaskEnvironment` (tasks, registered by version) or a `flyte.app.AppEnvironment` (one app,
created or updated in place)."""


class TriggerPolicy(enum.StrEnum):
    """Whether the triggers a deploy registers may fire."""

    as_code = "as-code"
    """Each trigger is active or not as its `auto_activate` says (releases; default-branch pushes by
    default)."""
    inactive = "inactive"
    """Every trigger is registered inactive (PR previews: a preview never fires a schedule)."""


class DiscoveredEnv(Model):
    """One environment found by discovery, with the live SDK object the later stages read."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    env: Any = Field(exclude=True, repr=False)
    """The live `flyte.TaskEnvironment` or `flyte.app.AppEnvironment` (or subclass) object."""
    var: str | None
    """Module-level variable it is bound to, when there is one."""
    file: Path
    """Absolute path of the file that defines it."""


class Discovery(Model):
    """Output of discovery: the selected environments and what importing them loaded."""

    root_dir: Path
    environments: tuple[DiscoveredEnv, ...]
    """The selected roots (FILE VAR: one; --all / --recursive: every environment found)."""
    loaded_files: tuple[Path, ...]
    """Absolute paths of the modules loaded under root_dir (the `loaded_modules` bundle input),
    excluding site-packages, interpreter prefixes and the flyte package itself."""
    sys_paths: tuple[Path, ...] = ()
    """Import roots the project needs, root_dir first: in FILE mode also FILE's folder, as `flyte
    deploy` appends it to sys.path. The runtime re-adds them from `_F_SYS_PATH`."""
    all_environments: tuple[DiscoveredEnv, ...] = ()
    """Every environment created while importing, selected or not (names dependencies' files)."""
    warnings: tuple[str, ...] = ()
    """Environments found but skipped (e.g. app environments)."""


class EnvGraph(Model):
    """The depends_on closure of the selected environments, in deploy order."""

    root_dir: Path
    order: tuple[str, ...]
    """Environment names, dependencies first, ties broken by name."""
    environments: tuple[DiscoveredEnv, ...]
    """Same order as `order`."""
    loaded_files: tuple[Path, ...]
    sys_paths: tuple[Path, ...] = ()
    """Carried over from discovery."""
    warnings: tuple[str, ...] = ()
    """Carried over from discovery."""

    def env(self, name: str) -> DiscoveredEnv:
        return next(e for e in self.environments if e.name == name)


class GitInfo(Model):
    """The part of the git context a plan records."""

    sha: str | None
    ref: str | None
    pr: int | None
    dirty: bool


class VersionInfo(Model):
    """Output of `flyte-deploy version --json`."""

    version: str
    sha: str | None
    image_tags: tuple[str, ...]
    release: bool
    pr: int | None
    dirty: bool
    warnings: tuple[str, ...] = ()
    """Why a tag was not treated as a release (not semver, dirty tree, PR event)."""


class ImageSpec(Model):
    """An environment's image as planned (before any build)."""

    ref_name: str | None = None
    """Set for `Image.from_ref_name(NAME)` images, filled from `--image NAME=URI`."""
    spec_id: str
    """Stable identifier of the image spec (base + layers); independent of registry and git."""
    uri: str | None = None
    """Known final reference: mapped/external image, or `repo@sha256:...` once built."""
    needs_build: bool = True
    base: str | None = None
    """The reference a build starts FROM (after `--image` mapping, before base-image mirrors);
    None for Dockerfile images."""
    external: bool = False
    """A string image, a mapped `from_ref_name` without layers, or the bare `--image` default:
    deployed as-is in every mode, never rebuilt with code."""


class PlannedTrigger(Model):
    """One `flyte.Trigger` of one task, as the plan registers it."""

    task: str
    """The task's full name (`env.function`)."""
    name: str
    schedule: str
    """How it fires, in words: `cron 0 2 * * * (America/New_York)`, `every 60 minutes`, `on demand`."""
    timezone: str | None = None
    inputs: tuple[str, ...] = ()
    """`name=value` of the inputs it binds (the scheduled time as `name=<trigger time>`)."""
    auto_activate: bool = True
    """What the code says."""
    active: bool = True
    """What is registered, after the trigger policy."""


class PlannedApp(Model):
    """What an app environment deploys as."""

    name: str
    """The app's name on the control plane: the environment's name plus the app suffix (previews)."""
    port: int | None = None
    type: str | None = None


class PlannedEnv(Model):
    name: str
    depends_on: tuple[str, ...]
    tasks: tuple[str, ...]
    """`env.tasks` function names (none for an app)."""
    image: ImageSpec
    mode: DeployMode
    mode_reason: str
    source_file: Path | None = None
    kind: EnvKind = "task"
    triggers: tuple[PlannedTrigger, ...] = ()
    """Every trigger of every task of the environment, in task order."""
    app: PlannedApp | None = None
    """Set for app environments."""


class BundleSpec(Model):
    copy_style: CopyStyle
    files: tuple[str, ...]
    """POSIX paths relative to root_dir, sorted."""
    digest: str | None = None
    """sha256 of the bundle bytes, once computed."""
    size: int | None = None
    """Size in bytes of the bundle (`<digest>.tar.gz`), once computed."""
    warnings: tuple[str, ...] = ()
    """Paths left out for a reason worth showing (sockets, devices, dangling symlinks)."""


class Plan(Model):
    """What a deploy would do, computed without building, pushing or uploading anything."""

    version: str
    git: GitInfo
    image_tags: tuple[str, ...]
    release: bool = False
    project: str
    domain: str
    root_dir: Path
    """Relative to the repository top ("." outside git), so two clones plan identically; the
    absolute import root is `EnvGraph.root_dir`."""
    environments: tuple[PlannedEnv, ...]
    """In deploy order: dependencies first."""
    bundle: BundleSpec | None
    image_args: tuple[str, ...]
    """`["--image", "name=uri", ...]` for `flyte deploy`."""
    copy_style: CopyStyle | None = None
    """Resolved copy style (`auto` → `loaded_modules`); `none` means no bundle."""
    registry: str | None = None
    """Where built images are pushed (`--registry`)."""
    trigger_policy: TriggerPolicy = TriggerPolicy.as_code
    warnings: tuple[str, ...] = ()


class BundleArtifact(Model):
    digest: str
    size: int
    path: Path
    """Local file `<digest>.tar.gz`."""
    uri: str | None = None
    """Where it was uploaded (`file://...` or `s3://...`)."""
    reused: bool = False
    """The object already existed in storage; nothing was uploaded."""
    files: tuple[str, ...] = ()


class BuiltImage(Model):
    env_name: str
    repository: str
    """Lower-cased registry path, e.g. `127.0.0.1:5000/acme/prep`."""
    identity: str
    """Content hash of everything that went into the build; also pushed as a tag."""
    digest: str | None
    """`sha256:...`; None when built but not pushed."""
    tags: tuple[str, ...]
    built: bool
    """False when the identity already existed and only tags were added."""
    pushed: bool
    tag_suffix: str = ""
    """Appended to its git tags when other images share the repository (`sha-abc1234-cpu`)."""

    @property
    def uri(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.identity}"


class Artifacts(Model):
    bundle: BundleArtifact | None = None
    images: tuple[BuiltImage, ...] = ()


EnvStatus = Literal["registered", "updated", "unchanged", "failed", "skipped"]
"""`updated`: an app that existed with another spec was updated in place (apps are mutable)."""


class TriggerDeployment(Model):
    """A trigger as the control plane holds it after the deploy."""

    task: str
    name: str
    schedule: str
    active: bool
    revision: int | None = None
    """The control plane's revision of the trigger, when it reports one."""


class AppDeployment(Model):
    name: str
    revision: int | None = None
    url: str | None = None
    """The public URL, when the control plane reports one."""
    reason: str | None = None
    """Why it was updated (names the version and commit)."""


class EnvDeployment(Model):
    name: str
    tasks: tuple[str, ...]
    status: EnvStatus
    image: str | None = None
    bundle_uri: str | None = None
    error: str | None = None
    kind: EnvKind = "task"
    triggers: tuple[TriggerDeployment, ...] = ()
    removed_triggers: tuple[str, ...] = ()
    """`task/trigger` names no longer in the code that the deploy removed from the control plane."""
    app: AppDeployment | None = None


class Deployment(Model):
    version: str
    project: str
    domain: str
    endpoint: str
    environments: tuple[EnvDeployment, ...]
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(e.status in ("registered", "updated", "unchanged") for e in self.environments)


class Timing(Model):
    stage: str
    seconds: float


class Report(Model):
    """The whole run, as rendered to the terminal, the step summary and the PR comment."""

    plan: Plan
    artifacts: Artifacts
    deployment: Deployment | None
    timings: tuple[Timing, ...] = ()
    started_at: datetime | None = None

"""The images stage: plan → built, pushed, tagged images, referenced by digest.

For each planned environment whose image needs a build: render it (plus, in container mode, the
project code as the last layer), hash the build inputs into an identity, and ask the registry for
that identity. Found → nothing is built; the git-derived tags are added by copying the manifest.
Missing → build (bounded concurrency), push the identity tag, then add the git tags the same way.
Environments whose rendered images are identical share one build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from deployer.errors import BuildError, RegistryError, UsageError
from deployer.images.auth import Credentials
from deployer.images.registry import RegistryClient
from deployer.images.render import CodeFiles, RenderedImage, render_image
from deployer.images.tags import parse_mirrors, repository, sanitize_tag
from deployer.models import BuiltImage, CopyStyle, EnvGraph, Plan, PlannedEnv
from deployer.request import DeployRequest

if TYPE_CHECKING:
    from rich.progress import Progress

    from deployer.gitctx import GitContext
    from deployer.images.builder import DockerBuilder

CONCURRENCY_ENV = "FLYTE_DEPLOY_BUILD_CONCURRENCY"
FLYTE_DEFAULT_IMAGE_NAME = "flyte"
"""The name `Image.from_debian_base()` gives every image: too generic to name a repository."""


@dataclass
class _Group:
    """One distinct build, shared by every environment whose rendered image is identical."""

    rendered: RenderedImage
    envs: list[str]
    repository: str
    label: str = ""
    result: BuiltImage | None = field(default=None, repr=False)

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.rendered.identity}"


def build_images(
    plan: Plan,
    graph: EnvGraph,
    git: GitContext,
    request: DeployRequest,
    *,
    console: Console | None = None,
) -> tuple[BuiltImage, ...]:
    """Build, push and tag the images the plan needs; one `BuiltImage` per environment built for."""
    groups = render_groups(plan, graph, request)
    if not groups:
        return ()
    writes = request.settings.push and not request.settings.dry_run
    if writes and not request.settings.registry:
        envs = ", ".join(env for g in groups for env in g.envs)
        raise UsageError(f"--registry is required to push the images built for {envs} (or pass --no-push)")
    git_tags = tuple(dict.fromkeys(sanitize_tag(t) for t in plan.image_tags))
    labels = oci_labels(git, plan.version)
    credentials = Credentials.from_env(request.settings.registry)
    with RegistryClient(credentials) as registry:
        if request.settings.dry_run:
            for group in groups:
                group.result = _dry_run_result(
                    group, registry if request.settings.registry else None, console
                )
        else:
            from deployer.images.builder import DockerBuilder

            builder = DockerBuilder(console=console, credentials=credentials)
            try:
                with builder.progress() as progress:
                    work = _Worker(builder, registry, progress, request, git_tags, labels)
                    _run_bounded(groups, work.run)
            finally:
                builder.close()
    return tuple(
        group.result.model_copy(update={"env_name": env})
        for group in groups
        if group.result is not None
        for env in group.envs
    )


def render_groups(plan: Plan, graph: EnvGraph, request: DeployRequest) -> list[_Group]:
    """Render every image the plan needs and group environments by identity (no I/O but reading files)."""
    mirrors = parse_mirrors(request.settings.base_image_mirrors)
    root_dir = Path(graph.root_dir)
    groups: dict[str, _Group] = {}
    for planned in plan.environments:
        if not planned.image.needs_build:
            continue
        node = graph.env(planned.name)
        image = node.env.image
        code = _code_files(plan, planned, graph)
        rendered = render_image(
            image,
            base=_base_reference(planned, image, request),
            root_dir=root_dir,
            mirrors=mirrors,
            code=code,
            copy_style=(plan.copy_style or request.settings.copy_style.resolved()).value,
            select_code=_code_selector(graph, root_dir),
            name=planned.name,
        )
        existing = groups.get(rendered.identity)
        if existing is not None:
            existing.envs.append(planned.name)
            continue
        repo = repository(request.settings.registry, _image_name(planned.name, image))
        groups[rendered.identity] = _Group(rendered=rendered, envs=[planned.name], repository=repo)
    _check_repositories(list(groups.values()))
    for group in groups.values():
        group.label = ", ".join(group.envs)
    return list(groups.values())


def oci_labels(git: Any, version: str) -> dict[str, str]:
    """OCI annotations from the commit; `created` is the commit time, so rebuilds label identically."""
    commit_time = getattr(git, "commit_time", None)
    labels = {
        "org.opencontainers.image.revision": getattr(git, "sha", None),
        "org.opencontainers.image.source": getattr(git, "repo_url", None),
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": commit_time.isoformat() if commit_time else None,
    }
    return {k: v for k, v in labels.items() if v}


# ---------------------------------------------------------------------------------------------- work


class _Worker:
    def __init__(
        self,
        builder: DockerBuilder,
        registry: RegistryClient,
        progress: Progress,
        request: DeployRequest,
        git_tags: tuple[str, ...],
        labels: dict[str, str],
    ) -> None:
        self.builder = builder
        self.registry = registry
        self.progress = progress
        self.push = request.settings.push
        self.has_registry = bool(request.settings.registry)
        self.git_tags = git_tags
        self.labels = labels

    def run(self, group: _Group) -> None:
        # Two deploys of one commit on this machine build one image once: the second waits, then finds
        # it in the registry. Built separately, the two pushes would give two digests (the engine
        # stamps each build with its time) and the later deploy would find its version taken.
        with _build_lock(group.reference):
            self._run(group)

    def _run(self, group: _Group) -> None:
        identity, repo = group.rendered.identity, group.repository
        existing = self.registry.manifest_digest(repo, identity) if self.has_registry else None
        if existing is not None:
            self._reuse(group, existing)
            return
        built = self.builder.image_id(group.reference) is None
        if built:
            from deployer.images.builder import BuildJob

            self.builder.build(
                BuildJob(group.label, group.rendered, group.reference, self.labels), self.progress
            )
        for tag in self.git_tags:
            self.builder.tag(group.reference, repo, tag)
        if not self.push:
            group.result = self._result(group, None, (identity, *self.git_tags), built=built, pushed=False)
            return
        # Another machine may have pushed the same build meanwhile: the first push wins.
        existing = self.registry.manifest_digest(repo, identity)
        if existing is not None:
            self._reuse(group, existing)
            return
        self.builder.push(repo, identity, group.label, self.progress)
        digest = self.registry.manifest_digest(repo, identity)
        if digest is None:
            raise BuildError(f"pushed {group.reference}, but the registry does not list it")
        tags = (identity, *self._retag(group))
        group.result = self._result(group, digest, tags, built=built, pushed=True)

    def _reuse(self, group: _Group, digest: str) -> None:
        identity = group.rendered.identity
        tags = (identity, *self._retag(group)) if self.push else (identity,)
        group.result = self._result(group, digest, tags, built=False, pushed=self.push)
        message = f"{group.label}: {group.repository}@{digest} already built; tagged {', '.join(tags)}"
        self.progress.console.print(message, soft_wrap=True, markup=False, highlight=False)

    def _retag(self, group: _Group) -> tuple[str, ...]:
        for tag in self.git_tags:
            self.registry.retag(group.repository, group.rendered.identity, tag)
        return self.git_tags

    @staticmethod
    def _result(
        group: _Group, digest: str | None, tags: Sequence[str], *, built: bool, pushed: bool
    ) -> BuiltImage:
        return BuiltImage(
            env_name=group.envs[0],
            repository=group.repository,
            identity=group.rendered.identity,
            digest=digest,
            tags=tuple(tags),
            built=built,
            pushed=pushed,
        )


def _dry_run_result(group: _Group, registry: RegistryClient | None, console: Console | None) -> BuiltImage:
    digest = None
    if registry is not None:
        try:
            digest = registry.manifest_digest(group.repository, group.rendered.identity)
        except RegistryError as exc:
            (console or Console(stderr=True)).print(f"warning: {exc}", markup=False)
    tags = (group.rendered.identity,) if digest else ()
    return _Worker._result(group, digest, tags, built=False, pushed=False)


@contextlib.contextmanager
def _build_lock(reference: str) -> Iterator[None]:
    """An exclusive lock on one image reference among the processes of this machine (flock: the
    kernel releases it when a holder dies, so a crash never blocks the next deploy)."""
    # The user's own cache, not /tmp: nobody else can plant a link where the lock file goes.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = cache / "flyte-deploy" / "build-locks"
    name = hashlib.sha256(reference.encode()).hexdigest()[:32]
    fd: int | None = None
    with contextlib.suppress(OSError):  # no writable cache (a read-only home): no serializing
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run_bounded(groups: list[_Group], fn: Callable[[_Group], None]) -> None:
    limit = _concurrency()
    if limit == 1 or len(groups) == 1:
        for group in groups:
            fn(group)
        return
    with ThreadPoolExecutor(max_workers=min(limit, len(groups)), thread_name_prefix="image-build") as pool:
        futures = [pool.submit(fn, group) for group in groups]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def _concurrency() -> int:
    raw = os.environ.get(CONCURRENCY_ENV, "2")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{CONCURRENCY_ENV}={raw!r}: expected a positive integer")
    return value


# ---------------------------------------------------------------------------------------------- specs


def _base_reference(planned: PlannedEnv, image: Any, request: DeployRequest) -> str | None:
    """The FROM reference before mirrors: the plan's, else the mapped URI of a ref image, else the
    image's own base (or the as-is URI of a string / `auto` image)."""
    import flyte

    from deployer.images.spec import mapped_uri, parse_image_map

    if planned.image.base:
        return planned.image.base
    if not isinstance(image, flyte.Image):
        return planned.image.uri
    if image._ref_name is None:
        return image.base_image
    return mapped_uri(planned.name, image._ref_name, parse_image_map(request.settings.images))


def _image_name(env_name: str, image: Any) -> str:
    name = getattr(image, "name", None)
    return name if name and name != FLYTE_DEFAULT_IMAGE_NAME else env_name


def _code_files(plan: Plan, planned: PlannedEnv, graph: EnvGraph) -> CodeFiles | None:
    if planned.mode != "container" or plan.bundle is None or not plan.bundle.files:
        return None
    root_dir = Path(graph.root_dir)
    # Import roots besides root_dir (FILE's folder, as `flyte deploy` adds it): Flyte's runtime only
    # re-adds `_F_SYS_PATH` after downloading a bundle, so baked-in code needs them on PYTHONPATH.
    extra = tuple(
        Path(p).relative_to(root_dir).as_posix()
        for p in graph.sys_paths
        if Path(p) != root_dir and Path(p).is_relative_to(root_dir)
    )
    return CodeFiles(root_dir=root_dir, files=plan.bundle.files, sys_paths=extra)


def _code_selector(graph: EnvGraph, root_dir: Path) -> Callable[[str], tuple[str, ...]]:
    def select(copy_style: str) -> tuple[str, ...]:
        from deployer.bundle import env_includes, select_files

        includes = env_includes(node.env for node in graph.environments)
        return select_files(root_dir, CopyStyle(copy_style), graph.loaded_files, includes)

    return select


def _check_repositories(groups: list[_Group]) -> None:
    seen: dict[str, _Group] = {}
    for group in groups:
        other = seen.setdefault(group.repository, group)
        if other is not group:
            raise BuildError(
                f"environments {other.envs[0]!r} and {group.envs[0]!r} have different images named "
                f"{group.repository!r}: their git tags would overwrite each other; rename one (name=)"
            )

"""The images stage: plan → built, pushed, tagged images, referenced by digest.

For each planned environment whose image needs a build: render it (plus, in container mode, the
project code as the last layer), hash the build inputs into an identity, and ask the registry for
that identity. Found → nothing is built; the git-derived tags are added by copying the manifest.
Missing:
- the *dependency image* (everything but the code) is looked up under its own identity; only when
  it is missing does an engine build it (reusing the layers of the repository's previous dependency
  image from the registry, so a fresh CI runner reruns only the steps that changed) and push it;
- the code is then appended in the registry as one deterministic layer (`append`): no engine, the
  upload is the code's size, and one commit gives one image digest on any machine.
Without a push (`--no-push`) the whole image is built on the engine instead. Environments whose
rendered images are identical share one build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer.errors import BuildError, RegistryError, UsageError
from deployer.images.registry import RegistryClient, RegistryHTTPError, RegistryRequestError
from deployer.images.render import CodeFiles, RenderedImage, render_image
from deployer.images.sources import SourcePolicy
from deployer.images.tags import IDENTITY_PREFIX, repository, sanitize_tag
from deployer.models import BuiltImage, CopyStyle, EnvGraph, Plan, PlannedEnv
from deployer.progress import QUIET, Progress
from deployer.versioning import parse_release

if TYPE_CHECKING:
    from deployer.gitctx import GitContext
    from deployer.images.auth import Credentials
    from deployer.images.builder import DockerBuilder
    from deployer.images.options import ImageOptions

FLYTE_DEFAULT_IMAGE_NAME = "flyte"
"""The name `Image.from_debian_base()` gives every image: too generic to name a repository."""
CACHE_TAG = "buildcache"
"""Moves to each dependency image pushed: where the next build of the repository finds its layers."""
EPOCH = "1970-01-01T00:00:00Z"


@dataclass
class _Group:
    """One distinct build, shared by every environment whose rendered image is identical."""

    rendered: RenderedImage
    envs: list[str]
    repository: str
    label: str = ""
    tag_suffix: str = ""
    """Set when other images share the repository: their git tags must not overwrite each other."""
    result: BuiltImage | None = field(default=None, repr=False)

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.rendered.identity}"

    def tag(self, name: str) -> str:
        return sanitize_tag(f"{name}{self.tag_suffix}") if self.tag_suffix else name


def build_images(
    plan: Plan,
    graph: EnvGraph,
    git: GitContext,
    options: ImageOptions,
    progress: Progress = QUIET,
    *,
    publish: bool = True,
) -> tuple[BuiltImage, ...]:
    """Build, push and tag the images the plan needs; one `BuiltImage` per environment built for.

    `publish=False` pushes only the tags that name this build (identity, `sha-`): the tags a release
    or a branch reads (`X.Y.Z`, `latest`, `pr-N`) wait for `publish_tags`, once the control plane has
    accepted the deploy, so a refused deploy moves none of them."""
    groups = render_groups(plan, graph, options)
    if not groups:
        return ()
    writes = options.push and not options.dry_run
    if writes and not options.registry:
        envs = ", ".join(env for g in groups for env in g.envs)
        raise UsageError(f"--registry is required to push the images built for {envs} (or pass --no-push)")
    all_tags = tuple(dict.fromkeys(sanitize_tag(t) for t in plan.image_tags))
    # Pushed builds get their own tags here; the moving ones go through publish_tags and its guard.
    git_tags = all_tags if not options.push else tuple(t for t in all_tags if not is_moving_tag(t))
    credentials = options.credentials()
    with RegistryClient(credentials, insecure_hosts=options.insecure_registries) as registry:
        if options.dry_run:
            for group in groups:
                group.result = _dry_run_result(group, registry if options.registry else None, progress)
        else:
            engine = _Engine(options, credentials, progress)
            try:
                work = _Worker(
                    engine, registry, progress, options, git_tags, oci_labels(git, plan.version), git
                )
                _run_bounded(groups, work.run, options.build_concurrency)
            finally:
                engine.close()
    built = tuple(
        group.result.model_copy(update={"env_name": env})
        for group in groups
        if group.result is not None
        for env in group.envs
    )
    return publish_tags(plan, built, options, progress) if publish else built


def is_moving_tag(tag: str) -> bool:
    """A tag that follows releases or a PR (`1.2.3`, `1.2`, `1`, `latest`, `pr-7`), unlike the tags that
    name one build (`sha-<7>`, `build-<hash>`)."""
    return not tag.startswith(("sha-", IDENTITY_PREFIX))


def publish_tags(
    plan: Plan, images: Sequence[BuiltImage], options: ImageOptions, progress: Progress = QUIET
) -> tuple[BuiltImage, ...]:
    """Point the plan's moving tags at the deployed images (by their identity tag). A floating release
    tag (`latest`, `X`, `X.Y`) never moves to an older release than the one it names now."""
    moving = [t for t in dict.fromkeys(sanitize_tag(t) for t in plan.image_tags) if is_moving_tag(t)]
    if not moving or not options.push or options.dry_run:
        return tuple(images)
    release = parse_release(plan.version) if plan.release else None
    published: list[BuiltImage] = []
    done: dict[tuple[str, str], tuple[str, ...]] = {}
    with RegistryClient(options.credentials(), insecure_hosts=options.insecure_registries) as registry:
        for image in images:
            key = (image.repository, image.identity)
            if key not in done and image.digest is not None:
                added: list[str] = []
                for base_tag in moving:
                    tag = sanitize_tag(f"{base_tag}{image.tag_suffix}") if image.tag_suffix else base_tag
                    newer = _newer_release(registry, image.repository, tag, base_tag, release)
                    if newer:
                        progress.info(f"{image.repository}:{tag} stays at {newer}, newer than {plan.version}")
                        continue
                    registry.retag(image.repository, image.identity, tag)
                    added.append(tag)
                done[key] = tuple(added)
            published.append(image.model_copy(update={"tags": (*image.tags, *done.get(key, ()))}))
    return tuple(published)


def _newer_release(registry: RegistryClient, repo: str, tag: str, base_tag: str, release: Any) -> str | None:
    """The version `tag` names now, when it is a floating release tag holding a newer release."""
    if release is None or not (base_tag == "latest" or _FLOATING.fullmatch(base_tag)):
        return None
    current = registry.image_version(repo, tag)
    held = parse_release(current) if current else None
    return current if held is not None and held > release else None


_FLOATING = re.compile(r"\d+(\.\d+)?")


def render_groups(plan: Plan, graph: EnvGraph, options: ImageOptions) -> list[_Group]:
    """Render every image the plan needs and group environments by identity (no I/O but reading files)."""
    root_dir = Path(graph.root_dir)
    policy = SourcePolicy(root_dir, options.allow_outside_sources, options.allow_outside_hint)
    groups: dict[str, _Group] = {}
    for planned in plan.environments:
        if not planned.image.needs_build:
            continue
        image = _sdk_image(graph.env(planned.name).env.image)
        rendered = render_image(
            image,
            base=_base_reference(planned, image, options),
            root_dir=root_dir,
            mirrors=options.mirrors,
            code=_code_files(plan, planned, graph),
            copy_style=(plan.copy_style or options.copy_style.resolved()).value,
            select_code=_code_selector(graph, root_dir),
            name=planned.name,
            buildkit=options.builder != "engine",
            policy=policy,
        )
        existing = groups.get(rendered.identity)
        if existing is not None:
            existing.envs.append(planned.name)
            continue
        repo = repository(options.registry, _image_name(planned.name, image))
        groups[rendered.identity] = _Group(rendered=rendered, envs=[planned.name], repository=repo)
    _share_repositories(list(groups.values()))
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


class _Engine:
    """The Docker engine, reached only when some image really needs building: a source-only change
    of an image whose dependencies are in the registry deploys without one."""

    def __init__(self, options: ImageOptions, credentials: Credentials, progress: Progress) -> None:
        self._options = options
        self._credentials = credentials
        self._progress = progress
        self._builder: DockerBuilder | None = None
        self._lock = threading.Lock()

    def get(self) -> DockerBuilder:
        with self._lock:
            if self._builder is None:
                from deployer.images.builder import open_builder

                self._builder = open_builder(
                    self._options.builder,
                    docker_cli=self._options.docker_cli,
                    credentials=self._credentials,
                    progress=self._progress,
                )
            return self._builder

    def close(self) -> None:
        if self._builder is not None:
            self._builder.close()


class _Worker:
    def __init__(
        self,
        engine: _Engine,
        registry: RegistryClient,
        progress: Progress,
        options: ImageOptions,
        git_tags: tuple[str, ...],
        labels: dict[str, str],
        git: Any,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.progress = progress
        self.push = options.push
        self.has_registry = bool(options.registry)
        self.git_tags = git_tags
        self.labels = labels
        commit_time = getattr(git, "commit_time", None)
        # UTC, second precision: the config (and so the digest) must not depend on the machine's zone.
        self.created = commit_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if commit_time else EPOCH

    def run(self, group: _Group) -> None:
        # Two deploys of one commit on this machine build one image once: the second waits, then finds
        # it in the registry instead of building the same dependencies again.
        with _build_lock(group.reference):
            self._run(group)

    def _run(self, group: _Group) -> None:
        identity, repo = group.rendered.identity, group.repository
        existing = self.registry.manifest_digest(repo, identity) if self.has_registry else None
        if existing is not None:
            self._reuse(group, existing)
            return
        if not self.push:
            self._build_locally(group)
            return
        if group.rendered.code is None:
            digest = self._dependency_image(group, group.rendered)
        else:
            digest = self._append_code(group)
        tags = (identity, *self._retag(group))
        group.result = self._result(group, digest, tags, built=True, pushed=True)

    def _build_locally(self, group: _Group) -> None:
        from deployer.images.builder import BuildJob

        builder = self.engine.get()
        built = builder.image_id(group.reference) is None
        if built:
            builder.build(BuildJob(group.label, group.rendered, group.reference, self.labels))
        tags = tuple(group.tag(t) for t in self.git_tags)
        for tag in tags:
            builder.tag(group.reference, group.repository, tag)
        group.result = self._result(group, None, (group.rendered.identity, *tags), built=built, pushed=False)

    def _dependency_image(self, group: _Group, rendered: RenderedImage) -> str:
        """`repo:<identity of rendered>` in the registry, built and pushed when missing; its digest."""
        from deployer.images.builder import BuildJob

        repo = group.repository
        existing = self.registry.manifest_digest(repo, rendered.identity)
        if existing is not None:
            return existing
        builder = self.engine.get()
        reference = f"{repo}:{rendered.identity}"
        cache_tag = group.tag(CACHE_TAG)
        cache = (f"{repo}:{cache_tag}",) if self.registry.manifest_digest(repo, cache_tag) else ()
        if builder.image_id(reference) is None:
            builder.build(BuildJob(group.label, rendered, reference, self.labels, cache_from=cache))
        # Another machine may have pushed the same build meanwhile: the first push wins.
        existing = self.registry.manifest_digest(repo, rendered.identity)
        if existing is not None:
            return existing
        builder.push(repo, rendered.identity, group.label)
        digest = self.registry.manifest_digest(repo, rendered.identity)
        if digest is None:
            raise BuildError(f"pushed {reference}, but the registry does not list it")
        self.registry.retag(repo, rendered.identity, cache_tag)
        return digest

    def _append_code(self, group: _Group) -> str:
        from deployer.images.append import ConfigChange, append_layer
        from deployer.images.codelayer import code_destination, write_code_layer

        rendered = group.rendered
        code = rendered.code
        assert code is not None
        deps = rendered.dependency_image
        if deps.builds_nothing and deps.base:
            base = deps.base
        else:
            base = f"{group.repository}@{self._dependency_image(group, deps)}"
        with tempfile.TemporaryDirectory(prefix="flyte-deploy-layer-") as tmp:
            layers: dict[str, Any] = {}

            def layer_for(config: dict[str, Any]) -> Any:
                workdir = str((config.get("config") or {}).get("WorkingDir") or "/")
                destination = code_destination(workdir, code.dst)
                if destination not in layers:
                    layers[destination] = write_code_layer(code, destination, Path(tmp))
                return layers[destination]

            dst = code.dst.rstrip("/") + "/" if code.dst not in ("", ".") else "./"
            change = ConfigChange(
                created=self.created,
                created_by=f"COPY code/ {dst} # flyte-deploy: the project's code",
                labels=self.labels,
                python_paths=tuple(f"{dst}{path}" for path in code.sys_paths),
            )
            with self.progress.bar(f"{group.label}: code layer → {group.repository}", 1) as advance:
                try:
                    digest = append_layer(
                        self.registry,
                        base=base,
                        target_repo=group.repository,
                        tag=rendered.identity,
                        layer_for=layer_for,
                        change=change,
                    )
                except RegistryHTTPError as exc:
                    tried = f" (tried {exc.attempts} times)" if exc.attempts > 1 else ""
                    raise BuildError(
                        f"push of {group.reference} failed: {exc.status} {exc.reason}{tried}: {exc}"
                    ) from exc
                except RegistryRequestError as exc:
                    tried = f" (tried {exc.attempts} times)" if exc.attempts > 1 else ""
                    raise BuildError(f"push of {group.reference} failed: {exc}{tried}") from exc
                advance(1)
        sizes = ", ".join(f"{layer.size} bytes" for layer in layers.values())
        self.progress.info(f"{group.label}: code layer ({len(code.files)} files, {sizes}) appended to {base}")
        return digest

    def _reuse(self, group: _Group, digest: str) -> None:
        identity = group.rendered.identity
        tags = (identity, *self._retag(group)) if self.push else (identity,)
        group.result = self._result(group, digest, tags, built=False, pushed=self.push)
        self.progress.info(
            f"{group.label}: {group.repository}@{digest} already built; tagged {', '.join(tags)}"
        )

    def _retag(self, group: _Group) -> tuple[str, ...]:
        tags = tuple(group.tag(t) for t in self.git_tags)
        for tag in tags:
            self.registry.retag(group.repository, group.rendered.identity, tag)
        return tags

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
            tag_suffix=group.tag_suffix,
        )


def _dry_run_result(group: _Group, registry: RegistryClient | None, progress: Progress) -> BuiltImage:
    digest = None
    if registry is not None:
        try:
            digest = registry.manifest_digest(group.repository, group.rendered.identity)
        except RegistryError as exc:
            progress.warning(str(exc))
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


def _run_bounded(groups: list[_Group], fn: Callable[[_Group], None], limit: int) -> None:
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


# ---------------------------------------------------------------------------------------------- specs


def _sdk_image(image: Any) -> Any:
    """The environment's `flyte.Image`, or None for a string image or `"auto"`: those are only a
    base reference (the plan's), which a container-mode build puts the code on."""
    import flyte

    return image if isinstance(image, flyte.Image) else None


def _base_reference(planned: PlannedEnv, image: Any, options: ImageOptions) -> str | None:
    """The FROM reference before mirrors: the plan's, else the mapped URI of a ref image, else the
    image's own base (or the as-is URI of a string / `auto` image)."""
    from deployer.images.spec import mapped_uri

    if planned.image.base:
        return planned.image.base
    if image is None:
        return planned.image.uri
    if image._ref_name is None:
        return str(image.base_image) if image.base_image else None
    return mapped_uri(planned.name, image._ref_name, options.image_map)


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


def _share_repositories(groups: list[_Group]) -> None:
    """Different images with one name (one `flyte.Image` derived twice, as in Flyte's multi-image
    pattern) share the repository, as with `flyte deploy`: their identity tags differ, and each one's
    git tags get its first environment's name, so none overwrites another's."""
    by_repository: dict[str, list[_Group]] = {}
    for group in groups:
        by_repository.setdefault(group.repository, []).append(group)
    for shared in by_repository.values():
        if len(shared) > 1:
            for group in shared:
                group.tag_suffix = f"-{group.envs[0]}"

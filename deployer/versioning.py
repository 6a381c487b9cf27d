"""Flyte version and image tags from a git context (DESIGN.md "Version and tags").

`sanitize_tag` (shared with the image stage) makes any string a valid image tag.

Pure functions of the context: never random, never time-based, so re-running a commit is a no-op.
"""

from __future__ import annotations

import hashlib
import re

import semver

from deployer.errors import UsageError
from deployer.gitctx import PR_EVENTS, GitContext
from deployer.images.tags import sanitize_tag
from deployer.models import VersionInfo

__all__ = ["check_version", "parse_release", "release_tags", "sanitize_tag", "version_info"]

_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Enough of a content hash to tell two dirty trees apart, short enough to read.
_HASH_LEN = 12
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def parse_release(tag: str) -> semver.Version | None:
    """`v1.2.3` / `1.2.3` (pre-release and build parts allowed) → its version; anything else → None."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    try:
        return semver.Version.parse(text)
    except ValueError:
        return None


def release_tags(version: semver.Version) -> list[str]:
    """docker/metadata-action semver tags: `X.Y.Z`, `X.Y`, `X` (not for 0), `latest`; pre-releases only
    get their full version."""
    full = sanitize_tag(str(version))
    if version.prerelease:
        return [full]
    tags = [full, f"{version.major}.{version.minor}"]
    if version.major != 0:
        tags.append(str(version.major))
    tags.append("latest")
    return tags


def check_version(value: str) -> str:
    if not _VERSION_RE.fullmatch(value):
        raise UsageError(
            f"--version {value!r}: use 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit"
        )
    return value


def _pick_release(ctx: GitContext, warnings: list[str]) -> tuple[str, semver.Version] | None:
    if not ctx.tags:
        return None
    releases = [(t, v) for t in ctx.tags if (v := parse_release(t)) is not None]
    for tag in ctx.tags:
        if parse_release(tag) is None:
            warnings.append(f"tag {tag!r} is not a semver version (vX.Y.Z): not a release")
    if not releases:
        return None
    if ctx.event_name in PR_EVENTS:
        warnings.append(f"tag {releases[0][0]!r} ignored on a {ctx.event_name} event: not a release")
        return None
    if ctx.event_name and not (ctx.ref or "").startswith("refs/tags/"):
        # In CI only a tag push releases: a branch build of a tagged commit must not move `latest`.
        warnings.append(
            f"tag {releases[0][0]!r} points at this commit, but this {ctx.event_name} run is not a tag push: "
            "deployed under the commit's version, not as a release"
        )
        return None
    if ctx.dirty:
        warnings.append(
            f"tag {releases[0][0]!r} ignored: the working tree has uncommitted changes, "
            "so this is not a release"
        )
        return None
    return max(releases, key=lambda tv: tv[1])


def version_info(ctx: GitContext, *, override: str | None = None) -> VersionInfo:
    """The Flyte version and image tags for a git context.

    - release (semver tag at the commit, clean tree, not a PR): the tag name, e.g. `v1.2.3`;
    - clean commit: the full 40-hex commit SHA;
    - dirty tree: `<sha>-dirty-<12 hex of the changed files' content>`;
    - no repository: `local-<16 hex of the directory's content>`.
    `override` replaces the version only; tags still follow git.
    """
    warnings: list[str] = []
    release = _pick_release(ctx, warnings)
    tags: list[str] = []
    if release:
        tag_name, parsed = release
        version = sanitize_tag(tag_name)
        tags.extend(release_tags(parsed))
    elif ctx.sha and ctx.dirty:
        version = f"{ctx.sha}-dirty-{_short_hash(ctx)}"
    elif ctx.sha:
        version = ctx.sha
    else:
        version = f"local-{(ctx.content_hash or _EMPTY_HASH)[:16]}"

    if ctx.pr is not None:
        tags.append(f"pr-{ctx.pr}")
    if ctx.sha:
        # A dirty build must never carry the clean commit's tag: someone would pull the wrong code.
        tags.append(f"sha-{ctx.sha[:7]}-dirty-{_short_hash(ctx)}" if ctx.dirty else f"sha-{ctx.sha[:7]}")
    else:
        tags.append(version)

    if override is not None:
        version = check_version(override)
    return VersionInfo(
        version=version,
        sha=ctx.sha,
        image_tags=tuple(dict.fromkeys(sanitize_tag(t) for t in tags)),
        release=release is not None,
        pr=ctx.pr,
        dirty=ctx.dirty,
        warnings=tuple(warnings),
    )


def _short_hash(ctx: GitContext) -> str:
    return (ctx.content_hash or _EMPTY_HASH)[:_HASH_LEN]

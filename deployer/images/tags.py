"""Image references: repository names, tag sanitising, identity tags, base-image mirrors.

Registries (GHCR especially) reject upper case in repository paths, and tags must match
`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; everything we push goes through these helpers.
"""

from __future__ import annotations

import re

from deployer.errors import UsageError

_TAG_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_BAD = re.compile(r"[^a-z0-9._/-]+")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
IDENTITY_PREFIX = "build-"


def sanitize_tag(tag: str) -> str:
    """`feature/Foo bar` → `feature-Foo-bar`; leading `.`/`-` dropped; at most 128 characters."""
    clean = _TAG_BAD.sub("-", tag).lstrip(".-")[:128]
    if not clean:
        raise UsageError(f"image tag {tag!r} has no usable characters")
    return clean


def identity_tag(content_sha256: str) -> str:
    """The tag an image identity is pushed under (128 bits of the content hash is plenty)."""
    if not _HEX64.match(content_sha256):
        raise ValueError(f"not a sha256 hex digest: {content_sha256!r}")
    return f"{IDENTITY_PREFIX}{content_sha256[:32]}"


def repository_name(name: str) -> str:
    """An image name made valid as a repository path component, lower-cased."""
    clean = _NAME_BAD.sub("-", name.lower())
    clean = re.sub(r"/{2,}", "/", clean).strip("/._-")
    if not clean:
        raise UsageError(f"image name {name!r} has no usable characters")
    return clean


def repository(registry: str | None, name: str) -> str:
    """`<registry>/<name>`, lower-cased; just `<name>` when nothing is pushed anywhere."""
    base = repository_name(name)
    if not registry:
        return base
    return f"{registry.strip().rstrip('/').lower()}/{base}"


def split_repository(repo: str) -> tuple[str, str]:
    """`127.0.0.1:5000/acme/prep` → (`127.0.0.1:5000`, `acme/prep`); Docker Hub names get its host."""
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", repo if rest else f"library/{repo}"


def normalize_reference(ref: str) -> str:
    """Docker's short forms spelled out: `python:3.11` → `docker.io/library/python:3.11`."""
    host, path = split_repository(ref)
    return f"{host}/{path}"


def parse_mirrors(values: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """`FROM=TO` strings → pairs, longest FROM first so the most specific rewrite wins."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        source, sep, target = value.partition("=")
        source, target = source.strip().rstrip("/"), target.strip().rstrip("/")
        if not sep or not source or not target:
            example = "ghcr.io/flyteorg=mirror.local/flyteorg"
            raise UsageError(f"--base-image-mirror {value!r}: expected FROM=TO, e.g. {example}")
        pairs.append((source, target))
    return tuple(sorted(pairs, key=lambda p: len(p[0]), reverse=True))


def apply_mirrors(ref: str, mirrors: tuple[tuple[str, str], ...]) -> str:
    """Rewrite `ref` by the first FROM that is a prefix of it at a path/tag boundary.

    `ghcr.io/flyteorg/flyte` matches `ghcr.io/flyteorg/flyte:py3.11` but not `ghcr.io/flyteorg/flyte-x`;
    Docker Hub short names are matched in their spelled-out form too (`docker.io/library/python`).
    """
    for candidate in dict.fromkeys((ref, normalize_reference(ref))):
        for source, target in mirrors:
            if candidate == source or (candidate.startswith(source) and candidate[len(source)] in "/:@"):
                return target + candidate[len(source) :]
    return ref

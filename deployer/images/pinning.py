"""Pin image references that are deployed as-is (no build) to the digest their tag points at now.

DESIGN: deploy by digest, never by a mutable tag. An image we did not build (a string image, a mapped
`from_ref_name`, Flyte's default base in bundle mode) is resolved once, at deploy time, so a later push
to its tag cannot change what the registered task runs.
"""

from __future__ import annotations

import httpx

from deployer.errors import DeployError
from deployer.images.auth import Credentials
from deployer.images.registry import RegistryClient


def split_tag(reference: str) -> tuple[str, str]:
    """`host/repo:tag` → (`host/repo`, `tag`); no tag means Docker's `latest`."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def pin_by_digest(reference: str, *, timeout: float = 5.0) -> str | None:
    """`repo:tag@sha256:...` for `reference` (the tag stays for people; the digest is what is pulled),
    or None when its registry cannot tell (unreachable, denied, unknown tag). A reference already
    pinned is returned unchanged."""
    if "@" in reference:
        return reference
    repo, tag = split_tag(reference)
    host = repo.split("/", 1)[0]
    try:
        with RegistryClient(Credentials.from_env(host), timeout=timeout, attempts=1) as registry:
            digest = registry.manifest_digest(repo, tag)
    except (DeployError, httpx.HTTPError, OSError):
        return None
    return f"{repo}:{tag}@{digest}" if digest else None

"""A small OCI distribution (registry HTTP API v2) client: manifests, tags, retag, delete.

Every manifest request sends the schema2 + OCI `Accept` headers: without them a registry may
down-convert to schema1, whose digest differs from the pushed image's. Retagging copies the
manifest bytes under a new tag (GET + PUT, same digest): no layer is pulled or pushed, which is
how a release promotes images already built for its commit.

Auth follows the registry's `WWW-Authenticate` challenge: `Bearer` (token endpoint, with the
challenge's own scope; credentials as basic auth, or an OAuth2 refresh token) or `Basic`.
Plain HTTP is used for loopback hosts (as the Docker engine does) and for the hosts of the
`insecure_registries` setting; HTTPS otherwise.

Blobs: existence checks, small reads (image configs), streamed reads, uploads streamed from a file
(`POST` + `PUT ?digest=`, the monolithic upload every registry implements) and cross-repository
mounts, which is all appending a layer in the registry needs.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from deployer.errors import RegistryError
from deployer.images.auth import Credential, Credentials
from deployer.images.reach import route
from deployer.images.tags import split_repository

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
UPLOAD_CHUNK = 1 << 20
MAX_SMALL_BLOB = 16 << 20
"""Largest blob read into memory (image configs are a few KB)."""
_RETRY_STATUS = {429, 500, 502, 503, 504}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryRequestError(RegistryError):
    """A request failed after `attempts` tries (the registry unreachable, or an error status)."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class RegistryHTTPError(RegistryRequestError):
    """The registry answered with an error status (after the retries a retryable status gets)."""

    def __init__(self, message: str, *, status: int, reason: str, attempts: int) -> None:
        super().__init__(message, attempts=attempts)
        self.status = status
        self.reason = reason


class DeleteResult(enum.StrEnum):
    """What `delete_tag` did."""

    tag = "tag"
    """The registry deleted the tag alone (OCI 1.1 tag deletion)."""
    manifest = "manifest"
    """No other tag pointed at the manifest, so the manifest was deleted by digest (distribution 2.x)."""
    shared = "shared"
    """Nothing deleted: the registry only deletes whole manifests and other tags still use this one."""
    missing = "missing"
    """The tag did not exist."""


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer digests, base first (empty for an index)."""
        return tuple(layer["digest"] for layer in self.json().get("layers", ()))


class RegistryClient:
    """One client for any number of registries; repositories are full references (`host/path`)."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        insecure_hosts: tuple[str, ...] | None = None,
    ) -> None:
        self._credentials = credentials or Credentials()
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._attempts = attempts
        self._insecure = insecure_hosts if insecure_hosts is not None else _insecure_from_settings()
        self._auth: dict[tuple[str, str], str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ manifests

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """`sha256:...` of the manifest `ref` (tag or digest) points at, or None if there is none."""
        response = self._call("HEAD", repo, f"manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, f"HEAD {repo}:{ref}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        manifest = self.get_manifest(repo, ref)
        return manifest.digest if manifest else None

    def get_manifest(self, repo: str, ref: str) -> Manifest | None:
        response = self._call("GET", repo, f"manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, f"GET {repo}:{ref}")
        body = response.content
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        media_type = media_type or json.loads(body).get("mediaType", DOCKER_MANIFEST)
        digest = response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        return Manifest(digest, media_type, body)

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        response = self._call(
            "PUT",
            repo,
            f"manifests/{ref}",
            headers={"Content-Type": manifest.media_type},
            content=manifest.body,
        )
        self._check(response, f"PUT {repo}:{ref}")
        return response.headers.get("Docker-Content-Digest") or manifest.digest

    def retag(self, repo: str, src_ref: str, new_tag: str) -> str:
        """Point `new_tag` at the manifest `src_ref` points at; returns the (unchanged) digest."""
        manifest = self.get_manifest(repo, src_ref)
        if manifest is None:
            raise RegistryError(f"cannot tag {repo}:{new_tag}: {repo}:{src_ref} does not exist")
        return self.put_manifest(repo, new_tag, manifest)

    # ------------------------------------------------------------------------------------------ blobs

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self._call("HEAD", repo, f"blobs/{digest}")
        if response.status_code == 404:
            return False
        self._check(response, f"HEAD {repo}@{digest}")
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A small blob (an image config), checked against its digest."""
        response = self._call("GET", repo, f"blobs/{digest}")
        self._check(response, f"GET blob {repo}@{digest}")
        body = response.content
        if len(body) > MAX_SMALL_BLOB:
            raise RegistryError(f"blob {repo}@{digest} is {len(body)} bytes: not an image config")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"blob {repo}@{digest}: the registry sent bytes with another digest")
        return body

    @contextmanager
    def stream_blob(self, repo: str, digest: str) -> Iterator[Iterator[bytes]]:
        """The blob's bytes in chunks, never all in memory (copying layers between registries)."""
        host, name = split_repository(repo)
        url = self._url(host, name, f"blobs/{digest}")
        self._call("HEAD", repo, f"blobs/{digest}")  # authorizes (and fails clearly) before streaming
        headers = {"Authorization": self._auth[(host, name)]} if (host, name) in self._auth else {}
        with self._http.stream("GET", url, headers=headers) as response:
            self._check(response, f"GET blob {repo}@{digest}")
            yield response.iter_bytes(UPLOAD_CHUNK)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Make `from_repo`'s blob part of `repo` without moving bytes (same registry host only).
        False when the registry would not mount it (then copy it)."""
        if split_repository(repo)[0] != split_repository(from_repo)[0]:
            return False
        source = split_repository(from_repo)[1]
        response = self._call("POST", repo, f"blobs/uploads/?mount={digest}&from={source}")
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # an upload session was opened instead: close it
            location = response.headers.get("Location")
            if location:
                self._call_url("DELETE", repo, self._absolute(repo, location))
        return False

    def upload_blob(
        self, repo: str, digest: str, source: bytes | Path | Callable[[], Iterable[bytes]]
    ) -> None:
        """Upload a blob unless the repository has it: `source` is the bytes, a file (streamed) or a
        function giving the chunks anew for each attempt."""
        if self.blob_exists(repo, digest):
            return
        response = self._call("POST", repo, "blobs/uploads/")
        self._check(response, f"start blob upload to {repo}")
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{repo}: the registry opened a blob upload without a Location")
        target = self._absolute(repo, location)
        target += ("&" if "?" in target else "?") + f"digest={digest}"
        if isinstance(source, bytes):
            body: Callable[[], Iterable[bytes] | bytes] = lambda: source  # noqa: E731
            size = len(source)
        elif isinstance(source, Path):
            path = source
            body = lambda: _file_chunks(path)  # noqa: E731
            size = path.stat().st_size
        else:
            body, size = source, None
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        response = self._call_url("PUT", repo, target, headers=headers, content=body)
        self._check(response, f"upload blob {digest} to {repo}")

    # ------------------------------------------------------------------------------------------ tags

    def list_tags(self, repo: str) -> tuple[str, ...]:
        """Every tag of `repo` (following pagination); empty when the repository does not exist."""
        tags: list[str] = []
        path: str | None = "tags/list?n=1000"
        while path:
            response = self._call("GET", repo, path)
            if response.status_code == 404:
                return ()
            self._check(response, f"list tags of {repo}")
            tags.extend(response.json().get("tags") or ())
            path = _next_page(response)
        return tuple(sorted(set(tags)))

    def delete_tag(self, repo: str, tag: str, *, delete_shared_manifest: bool = False) -> DeleteResult:
        """Remove `tag`. Registries that implement OCI 1.1 tag deletion drop just the tag. Distribution
        2.x deletes only manifests (by digest), which removes every tag pointing at it: then the
        manifest is deleted only when no other tag uses it (or `delete_shared_manifest`), else nothing
        is deleted and `shared` is returned. The registry must allow deletes (`delete.enabled`)."""
        digest = self.manifest_digest(repo, tag)
        if digest is None:
            return DeleteResult.missing
        response = self._call("DELETE", repo, f"manifests/{tag}")
        if response.status_code in (200, 202):
            return DeleteResult.tag
        if response.status_code not in (400, 404, 405):
            self._check(response, f"DELETE {repo}:{tag}")
        if not delete_shared_manifest:
            others = [t for t in self.list_tags(repo) if t != tag and self.manifest_digest(repo, t) == digest]
            if others:
                return DeleteResult.shared
        response = self._call("DELETE", repo, f"manifests/{digest}")
        if response.status_code == 404:
            return DeleteResult.missing
        self._check(response, f"DELETE {repo}@{digest}")
        return DeleteResult.manifest

    def untag(self, repo: str, tag: str) -> DeleteResult:
        """Remove `tag` alone, leaving the image (and its other tags) in place, on any registry.

        OCI 1.1 registries delete a tag by name. Distribution 2.x deletes only manifests, which would
        take every other tag with it: there the tag is first moved onto a tombstone (an empty image
        unique to this repository and tag), and the tombstone is deleted."""
        if self.manifest_digest(repo, tag) is None:
            return DeleteResult.missing
        response = self._call("DELETE", repo, f"manifests/{tag}")
        if response.status_code in (200, 202):
            return DeleteResult.tag
        if response.status_code not in (400, 404, 405):
            self._check(response, f"DELETE {repo}:{tag}")
        tombstone = self._tombstone(repo, tag)
        self.put_manifest(repo, tag, tombstone)
        response = self._call("DELETE", repo, f"manifests/{tombstone.digest}")
        self._check(response, f"DELETE {repo}@{tombstone.digest}")
        return DeleteResult.tag

    def image_version(self, repo: str, ref: str) -> str | None:
        """The `org.opencontainers.image.version` label of the image `ref` names (the first platform's,
        for an index), or None."""
        manifest = self.get_manifest(repo, ref)
        if manifest is None:
            return None
        body = manifest.json()
        if body.get("manifests"):
            manifest = self.get_manifest(repo, str(body["manifests"][0]["digest"]))
            if manifest is None:
                return None
            body = manifest.json()
        config = body.get("config") or {}
        if not config.get("digest"):
            return None
        labels = (json.loads(self.get_blob(repo, str(config["digest"]))).get("config") or {}).get(
            "Labels"
        ) or {}
        version = labels.get("org.opencontainers.image.version")
        return str(version) if version else None

    def _tombstone(self, repo: str, tag: str) -> Manifest:
        config = json.dumps(
            {
                "architecture": "none",
                "os": "none",
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {"Labels": {"dev.flyte-deploy.tombstone": f"{repo}:{tag}"}},
            },
            sort_keys=True,
        ).encode()
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.upload_blob(repo, digest, config)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": digest, "size": len(config)},
                "layers": [],
            },
            sort_keys=True,
        ).encode()
        return Manifest("sha256:" + hashlib.sha256(body).hexdigest(), OCI_MANIFEST, body)

    # ------------------------------------------------------------------------------------------ HTTP

    def _url(self, host: str, name: str, path: str) -> str:
        # The scheme follows the name the user gave; the address, where that registry is from here.
        return f"{self._scheme(host)}://{route(host)}/v2/{name}/{path}"

    def _absolute(self, repo: str, location: str) -> str:
        host, name = split_repository(repo)
        host = "registry-1.docker.io" if host == "docker.io" else host
        return urljoin(self._url(host, name, ""), location)

    def _call(
        self,
        method: str,
        repo: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        host, name = split_repository(repo)
        host = "registry-1.docker.io" if host == "docker.io" else host
        return self._call_url(method, repo, self._url(host, name, path), headers=headers, content=content)

    def _call_url(
        self,
        method: str,
        repo: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Callable[[], Iterable[bytes] | bytes] | None = None,
    ) -> httpx.Response:
        host, name = split_repository(repo)
        host = "registry-1.docker.io" if host == "docker.io" else host
        path = url.split(f"/v2/{name}/", 1)[-1]
        scope_key = (host, name)
        response = self._send(method, url, headers, content, self._auth.get(scope_key))
        if response.status_code == 401:
            authorization = self._authorize(host, name, method, response)
            self._auth[scope_key] = authorization
            response = self._send(method, url, headers, content, authorization)
            if response.status_code == 401:
                raise RegistryError(
                    f"{host} refused the credentials for {name} ({method} {path.split('?')[0]})"
                )
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        content: bytes | Callable[[], Iterable[bytes] | bytes] | None,
        authorization: str | None,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if authorization:
            all_headers["Authorization"] = authorization
        for attempt in range(1, self._attempts + 1):
            body = content() if callable(content) else content
            try:
                response = self._http.request(method, url, headers=all_headers, content=body)
            except httpx.TransportError as exc:
                if attempt == self._attempts:
                    message = f"{method} {_redact(url)}: {type(exc).__name__}: {exc}"
                    raise RegistryRequestError(message, attempts=attempt) from exc
            else:
                if response.status_code not in _RETRY_STATUS or attempt == self._attempts:
                    return response
            time.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    def _authorize(self, host: str, name: str, method: str, challenge: httpx.Response) -> str:
        header = challenge.headers.get("WWW-Authenticate", "")
        scheme, _, rest = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        credential = self._credentials.for_host(host)
        if scheme.lower() == "basic":
            if credential is None or credential.identity_token:
                raise RegistryError(f"{host} needs a username and password: {_credential_hint()}")
            pair = f"{credential.username}:{credential.password.get_secret_value()}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryError(f"{host} asked for unsupported authentication {scheme or '(none)'!r}")
        actions = "pull" if method in ("GET", "HEAD") else "pull,push"
        scope = params.get("scope") or f"repository:{name}:{actions}"
        return f"Bearer {self._token(host, params['realm'], params.get('service'), scope, credential)}"

    def _token(
        self, host: str, realm: str, service: str | None, scope: str, credential: Credential | None
    ) -> str:
        query = {k: v for k, v in {"service": service, "scope": scope}.items() if v}
        try:
            if credential is not None and credential.identity_token:
                form = {
                    **query,
                    "grant_type": "refresh_token",
                    "client_id": "flyte-deploy",
                    "refresh_token": credential.password.get_secret_value(),
                }
                response = self._http.post(realm, data=form)
            else:
                auth = (credential.username, credential.password.get_secret_value()) if credential else None
                response = self._http.get(realm, params=query, auth=auth)
        except httpx.TransportError as exc:
            raise RegistryError(f"token endpoint of {host} unreachable: {type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            hint = "" if credential else f" ({_credential_hint()})"
            raise RegistryError(f"{host} token endpoint refused access to {scope}{hint}")
        if response.status_code >= 400:
            raise RegistryError(f"{host} token endpoint answered HTTP {response.status_code} for {scope}")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{host} token endpoint returned no token for {scope}")
        return str(token)

    def _scheme(self, host: str) -> str:
        hostname = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host.split("]")[0][1:]
        loopback = hostname in ("localhost", "::1") or hostname.startswith("127.")
        return "http" if loopback or host in self._insecure else "https"

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = response.text[:200]
        attempts = self._attempts if response.status_code in _RETRY_STATUS else 1
        raise RegistryHTTPError(
            f"{what}: HTTP {response.status_code}{' ' + detail if detail else ''}",
            status=response.status_code,
            reason=response.reason_phrase,
            attempts=attempts,
        )


def _next_page(response: httpx.Response) -> str | None:
    link = response.headers.get("Link")
    if not link:
        return None
    match = re.search(r"<([^>]+)>", link)
    if not match:
        return None
    target = match.group(1)
    # Links are absolute paths (`/v2/<name>/tags/list?...`); keep only what follows the repository.
    return "tags/" + target.split("/tags/", 1)[1] if "/tags/" in target else None


def _credential_hint() -> str:
    from deployer.settings import option_info

    username, password = option_info("registry_username").env[0], option_info("registry_password").env[0]
    return f"set {username}/{password} or log in (DOCKER_CONFIG)"


def _insecure_from_settings() -> tuple[str, ...]:
    from deployer.settings import load_settings

    return load_settings().insecure_registries


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(UPLOAD_CHUNK):
            yield chunk


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]+@", "//***@", url)

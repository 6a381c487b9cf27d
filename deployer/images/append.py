"""Append a layer to an image in the registry: new config + manifest on top of an existing image.

No engine and no layer download: the base image's manifest and config are read, the layer blob is
uploaded, and a config (diff IDs, history, env, labels added) and a manifest (the base's layers plus
the new one) are put. For a multi-platform index every platform manifest gets the same layer, and a
new index lists them. Configs and manifests are serialised deterministically from the base's own
bytes, so appending the same layer to the same base gives the same digest on any machine.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import RegistryError
from deployer.images.codelayer import CodeLayer
from deployer.images.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    Manifest,
    RegistryClient,
)

LAYER_MEDIA_TYPE = {
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.manifest.v1+json": "application/vnd.oci.image.layer.v1.tar+gzip",
}
_ATTESTATION = "attestation-manifest"


@dataclass(frozen=True)
class ConfigChange:
    """What the new layer changes in the image config besides the layer itself."""

    created: str
    """RFC 3339: the commit's time, so the config is a function of the commit."""
    created_by: str
    labels: Mapping[str, str]
    python_paths: tuple[str, ...] = ()
    """Prepended to PYTHONPATH (the extra import roots of the code)."""


LayerFor = Callable[[dict[str, Any]], CodeLayer]
"""The layer to append, given the base image's config (its working directory places the code)."""


def split_reference(reference: str) -> tuple[str, str]:
    """`host/repo:tag` or `host/repo@sha256:...` → (repository, tag or digest)."""
    if "@" in reference:
        repo, _, digest = reference.partition("@")
        return repo.rsplit(":", 1)[0] if repo.rfind(":") > repo.rfind("/") else repo, digest
    slash, colon = reference.rfind("/"), reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def append_layer(
    registry: RegistryClient,
    *,
    base: str,
    target_repo: str,
    tag: str,
    layer_for: LayerFor,
    change: ConfigChange,
) -> str:
    """Put `target_repo:tag` = `base` plus the layer; returns the new manifest's digest."""
    base_repo, ref = split_reference(base)
    manifest = registry.get_manifest(base_repo, ref)
    if manifest is None:
        raise RegistryError(f"cannot append the code layer: {base} does not exist in its registry")
    appender = _Appender(registry, base_repo, target_repo, layer_for, change)
    if manifest.media_type in (OCI_INDEX, DOCKER_LIST):
        return registry.put_manifest(target_repo, tag, appender.index(manifest))
    return registry.put_manifest(target_repo, tag, appender.image(manifest))


class _Appender:
    def __init__(
        self,
        registry: RegistryClient,
        base_repo: str,
        target_repo: str,
        layer_for: LayerFor,
        change: ConfigChange,
    ) -> None:
        self.registry = registry
        self.base_repo = base_repo
        self.target_repo = target_repo
        self.layer_for = layer_for
        self.change = change

    def index(self, manifest: Manifest) -> Manifest:
        body = manifest.json()
        entries = []
        for entry in body.get("manifests", ()):
            if (entry.get("annotations") or {}).get("vnd.docker.reference.type") == _ATTESTATION:
                continue  # provenance of the base image, not of the new one
            child = self.registry.get_manifest(self.base_repo, entry["digest"])
            if child is None:
                raise RegistryError(f"{self.base_repo}@{entry['digest']} (a platform of the base) is missing")
            new = self.image(child)
            self.registry.put_manifest(self.target_repo, new.digest, new)
            entries.append(
                {**entry, "mediaType": new.media_type, "digest": new.digest, "size": len(new.body)}
            )
        if not entries:
            raise RegistryError(f"{self.base_repo}: the base image index lists no platform image")
        return _manifest({**body, "manifests": entries}, manifest.media_type)

    def image(self, manifest: Manifest) -> Manifest:
        body = manifest.json()
        layer_type = LAYER_MEDIA_TYPE.get(manifest.media_type)
        if layer_type is None:
            raise RegistryError(f"cannot append a layer to a {manifest.media_type} manifest")
        config = json.loads(self.registry.get_blob(self.base_repo, body["config"]["digest"]))
        layer = self.layer_for(config)
        for descriptor in body.get("layers", ()):
            self._ensure_blob(descriptor["digest"])
        self.registry.upload_blob(self.target_repo, layer.digest, layer.path)
        config_bytes = _dumps(self._config(config, layer))
        config_digest = _digest(config_bytes)
        self.registry.upload_blob(self.target_repo, config_digest, config_bytes)
        new = {
            **{k: v for k, v in body.items() if k != "subject"},
            "config": {**body["config"], "digest": config_digest, "size": len(config_bytes)},
            "layers": [
                *body.get("layers", ()),
                {"mediaType": layer_type, "size": layer.size, "digest": layer.digest},
            ],
        }
        return _manifest(new, manifest.media_type)

    def _config(self, config: dict[str, Any], layer: CodeLayer) -> dict[str, Any]:
        container = dict(config.get("config") or {})
        labels = {**(container.get("Labels") or {}), **self.change.labels}
        container["Labels"] = dict(sorted(labels.items()))
        if self.change.python_paths:
            env = list(container.get("Env") or [])
            old = next((e.split("=", 1)[1] for e in env if e.startswith("PYTHONPATH=")), "")
            value = "".join(f"{p}:" for p in self.change.python_paths) + old
            env = [e for e in env if not e.startswith("PYTHONPATH=")] + [f"PYTHONPATH={value}"]
            container["Env"] = env
        rootfs = dict(config.get("rootfs") or {"type": "layers"})
        rootfs["diff_ids"] = [*rootfs.get("diff_ids", ()), layer.diff_id]
        history = [
            *config.get("history", ()),
            {"created": self.change.created, "created_by": self.change.created_by, "comment": "flyte-deploy"},
        ]
        return {
            **config,
            "created": self.change.created,
            "config": container,
            "rootfs": rootfs,
            "history": history,
        }

    def _ensure_blob(self, digest: str) -> None:
        if self.base_repo == self.target_repo or self.registry.blob_exists(self.target_repo, digest):
            return
        if self.registry.mount_blob(self.target_repo, digest, self.base_repo):
            return
        # Another registry: copy the layer through a file (the layer's size on disk, never in memory).
        with tempfile.TemporaryDirectory(prefix="flyte-deploy-blob-") as tmp:
            path = Path(tmp) / "blob"
            sha = hashlib.sha256()
            with self.registry.stream_blob(self.base_repo, digest) as chunks, path.open("wb") as out:
                for chunk in chunks:
                    sha.update(chunk)
                    out.write(chunk)
            if f"sha256:{sha.hexdigest()}" != digest:
                raise RegistryError(
                    f"{self.base_repo}@{digest}: the registry sent a blob with another digest"
                )
            self.registry.upload_blob(self.target_repo, digest, path)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _manifest(body: dict[str, Any], media_type: str) -> Manifest:
    data = _dumps(body)
    return Manifest(_digest(data), media_type, data)

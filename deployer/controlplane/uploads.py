"""Code bundles uploaded through the control plane's data proxy, as `flyte deploy` uploads them.

`DataProxyService.CreateUploadLocation` (content MD5, size, project/domain) → a signed URL → one PUT
with `Content-MD5` → the native URL the plane answered goes into the task specs. The deploy needs no
bucket credentials: the plane decides where bundles live. Objects are named `bundles/<sha256>.tar.gz`
within the project/domain, so the same bundle is the same object, and a runner that downloads it checks
the bytes against the name.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

from deployer.controlplane.base import ControlPlane, UploadLocation
from deployer.errors import StorageError
from deployer.models import BundleArtifact
from deployer.storage import SUFFIX, Storage

BUNDLE_ROOT = "bundles"
_ATTEMPTS = 4
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DataProxyStorage(Storage):
    def __init__(
        self,
        plane: ControlPlane,
        *,
        project: str,
        domain: str,
        org: str,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.plane = plane
        self.project, self.domain, self.org = project, domain, org
        self.url = f"the data proxy of {plane.label}"
        self._verify = verify

    def uri_for(self, digest: str) -> str:
        """Where the bundle will be (known exactly only once the plane answers): for dry runs."""
        return planned_uri(self.plane.label, self.project, self.domain, digest)

    def _stored_size(self, digest: str) -> int | None:
        return None  # the data proxy answers where to write, not what is there

    def _stored_digest(self, digest: str) -> str:
        raise StorageError("the data proxy cannot read back what it stored")  # never asked: nothing is held

    def _put(self, artifact: BundleArtifact) -> None:
        self.upload(artifact)

    def download(self, uri: str, dest: Path) -> Path:
        raise StorageError(
            f"{uri}: the data proxy only hands out upload locations; download from the native URL"
        )

    def upload(self, artifact: BundleArtifact) -> BundleArtifact:
        md5, size = _md5_and_size(artifact.path)
        if size != artifact.size:
            raise StorageError(
                f"bundle {artifact.path} is {size} bytes, not {artifact.size}: it changed after it was built"
            )
        location = self.plane.upload_location(
            project=self.project,
            domain=self.domain,
            org=self.org,
            filename=f"{artifact.digest}{SUFFIX}",
            md5=md5,
            size=size,
            root=BUNDLE_ROOT,
        )
        put_signed(location, artifact.path, md5=md5, size=size, verify=self._verify)
        return artifact.model_copy(update={"uri": location.native_url, "reused": False})


def planned_uri(label: str, project: str, domain: str, digest: str) -> str:
    """A stand-in for where a remote plane will keep the bundle (it decides when asked to upload)."""
    return f"dataproxy://{project}/{domain}/{BUNDLE_ROOT}/{digest}{SUFFIX}"


def embedded_bundle_uri(state_dir: Path, project: str, domain: str, digest: str) -> str:
    """Where the embedded plane's data proxy keeps this bundle (what its CreateUploadLocation answers)."""
    from deployer.controlplane.blobs import FileBlobs
    from deployer.controlplane.services import BUNDLES_DIR

    blobs = FileBlobs(Path(state_dir) / BUNDLES_DIR, signing_key=b"-")
    return blobs.native_url(f"{project}/{domain}/{BUNDLE_ROOT}/{digest}{SUFFIX}")


def put_signed(
    location: UploadLocation, source: Path, *, md5: bytes, size: int, verify: ssl.SSLContext | bool = True
) -> None:
    """One PUT of `source` to a signed URL (retried on transient failures); a `file://` location (the
    in-process embedded plane) is written directly."""
    if urlsplit(location.signed_url).scheme == "file":
        from deployer.controlplane.blobs import write_signed_file

        write_signed_file(location.signed_url, source, md5)
        return
    import httpx

    headers = {**location.headers, "Content-MD5": base64.b64encode(md5).decode(), "Content-Length": str(size)}
    shown = _redacted(location.signed_url)
    last = ""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with (
                open(source, "rb") as body,
                httpx.Client(verify=verify, timeout=httpx.Timeout(600, connect=30)) as http,
            ):
                response = http.put(location.signed_url, content=body, headers=headers)
        except (httpx.TransportError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code in (200, 201, 204):
                return
            last = f"HTTP {response.status_code}: {' '.join(response.text.split())[:300]}"
            if response.status_code not in _RETRY_STATUSES:
                raise StorageError(f"upload of {source.name} to {shown} refused: {last}")
        if attempt < _ATTEMPTS:
            time.sleep(0.5 * 2 ** (attempt - 1))
    raise StorageError(f"upload of {source.name} to {shown} failed after {_ATTEMPTS} attempts: {last}")


def _redacted(url: str) -> str:
    """A signed URL without its query: the signature is a credential."""
    base, sep, _ = url.partition("?")
    return f"{base}?…" if sep else base


def _md5_and_size(path: Path) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "md5")
            return digest.digest(), f.tell()
    except OSError as exc:
        raise StorageError(f"cannot read bundle {path}: {exc.strerror}") from exc

"""Where the embedded control plane's data proxy keeps uploads, and how it signs a PUT to them.

Keys are `PROJECT/DOMAIN/ROOT/FILENAME` where ROOT is the request's `filename_root`, else the base32 of
the content MD5 (as on Flyte's backend, dataproxy_service.go `constructStoragePath`): the same bytes land
on the same key, so a second upload of a bundle overwrites it with itself.

- `S3Blobs`: an S3-compatible bucket; the signed URL is a boto3 presigned `put_object` bound to the
  content MD5 (S3 refuses a body with another digest).
- `FileBlobs`: a directory. Over HTTP (`flyte-deploy serve`) the signed URL points at the server's own
  upload endpoint (`UPLOAD_PATH`), HMAC-signed over the key, the MD5 and the expiry; in-process (the
  one-shot embedded plane, which has no HTTP server) it is the object's own `file://` URL, which our
  client writes directly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from deployer.errors import StorageError

UPLOAD_PATH = "/flyte-deploy/upload/"
"""Path prefix of `flyte-deploy serve`'s own upload endpoint (file storage)."""


@dataclass(frozen=True)
class SignedPut:
    signed_url: str
    native_url: str
    expires_at: float
    """Unix time."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers the PUT must carry besides Content-MD5 and Content-Length."""


class Blobs(ABC):
    url: str
    """The storage root, for messages."""

    @abstractmethod
    def native_url(self, key: str) -> str: ...

    @abstractmethod
    def stored_md5(self, key: str) -> bytes | None:
        """The MD5 of the object at `key`, or None when there is none."""

    @abstractmethod
    def sign_put(
        self, key: str, *, md5: bytes, expires_in_s: float, md5_metadata: bool, base_url: str | None
    ) -> SignedPut:
        """A URL that accepts one PUT of the bytes with this MD5 at `key` until it expires. `base_url`:
        how the caller reached the server (`scheme://host:port`), None in-process."""


# ---------------------------------------------------------------------------------------------- file storage


class UploadRefused(Exception):
    """The upload endpoint refuses a PUT: `status` and the reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FileBlobs(Blobs):
    def __init__(self, root: Path, *, signing_key: bytes | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()
        # Per process: a signed URL lives minutes, and a restarted server hands out new ones.
        self._key = signing_key or secrets.token_bytes(32)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def native_url(self, key: str) -> str:
        return self.path(key).as_uri()

    def stored_md5(self, key: str) -> bytes | None:
        try:
            with open(self.path(key), "rb") as f:
                return hashlib.file_digest(f, "md5").digest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path(key)}: {exc.strerror}") from exc

    def sign_put(
        self, key: str, *, md5: bytes, expires_in_s: float, md5_metadata: bool, base_url: str | None
    ) -> SignedPut:
        expires_at = time.time() + expires_in_s
        native = self.native_url(key)
        if base_url is None:
            return SignedPut(signed_url=native, native_url=native, expires_at=expires_at)
        expires = str(int(expires_at))
        digest = base64.urlsafe_b64encode(md5).decode()
        query = f"expires={expires}&md5={digest}&sig={self._signature(key, expires, digest)}"
        signed = f"{base_url.rstrip('/')}{UPLOAD_PATH}{quote(key)}?{query}"
        return SignedPut(signed_url=signed, native_url=native, expires_at=expires_at)

    def _signature(self, key: str, expires: str, md5: str) -> str:
        message = f"PUT\n{key}\n{expires}\n{md5}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def receive(
        self, path_info: str, query: str, *, content_md5: str, length: int, body: Any, max_bytes: int
    ) -> str:
        """Store one signed PUT (`path_info`/`query` as the server got them, `body` a readable stream of
        `length` bytes). Returns the native URL; raises `UploadRefused`."""
        key = unquote(path_info.removeprefix(UPLOAD_PATH))
        params = {k: v[0] for k, v in parse_qs(query).items() if v}
        expires, digest, sig = params.get("expires", ""), params.get("md5", ""), params.get("sig", "")
        if not sig or not hmac.compare_digest(sig, self._signature(key, expires, digest)):
            raise UploadRefused(
                "403 Forbidden", "SignatureDoesNotMatch: the upload URL is not signed by this server"
            )
        if not expires.isdigit() or int(expires) < time.time():
            raise UploadRefused("403 Forbidden", "AccessDenied: Request has expired")
        md5 = _b64(digest, urlsafe=True)
        if md5 and _b64(content_md5) != md5:
            raise UploadRefused(
                "400 Bad Request", "BadDigest: Content-MD5 is not the MD5 the URL was signed for"
            )
        if length > max_bytes:
            raise UploadRefused("413 Request Entity Too Large", f"EntityTooLarge: at most {max_bytes} bytes")
        target = self.path(key)
        if md5 and self.stored_md5(key) == md5:
            _drain(body, length)
            return self.native_url(key)
        with self._temp_next_to(target) as (tmp, out):
            sha = hashlib.md5()
            left = length
            while left > 0:
                chunk = body.read(min(left, 1 << 20))
                if not chunk:
                    raise UploadRefused("400 Bad Request", "IncompleteBody: fewer bytes than Content-Length")
                sha.update(chunk)
                out.write(chunk)
                left -= len(chunk)
            out.flush()
            os.fsync(out.fileno())
            if md5 and sha.digest() != md5:
                raise UploadRefused("400 Bad Request", "BadDigest: the body does not match its Content-MD5")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        return self.native_url(key)

    @contextlib.contextmanager
    def _temp_next_to(self, target: Path) -> Iterator[tuple[str, Any]]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        except OSError as exc:
            raise UploadRefused(
                "500 Internal Server Error", f"cannot store the upload: {exc.strerror}"
            ) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                yield tmp, out
        except OSError as exc:
            raise UploadRefused(
                "500 Internal Server Error", f"cannot store the upload: {exc.strerror}"
            ) from exc
        finally:
            Path(tmp).unlink(missing_ok=True)


def _drain(body: Any, length: int) -> None:
    left = length
    while left > 0 and (chunk := body.read(min(left, 1 << 20))):
        left -= len(chunk)


def _b64(text: str, *, urlsafe: bool = False) -> bytes:
    try:
        return base64.urlsafe_b64decode(text) if urlsafe else base64.b64decode(text, validate=True)
    except ValueError:
        return b"\0"


def write_signed_file(signed_url: str, source: Path, md5: bytes) -> None:
    """The in-process form of a PUT to a `file://` location `FileBlobs.sign_put` handed out: copy `source`
    into place atomically, checking its MD5 (what the upload endpoint checks over HTTP)."""
    target = Path(unquote(urlsplit(signed_url).path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise StorageError(f"cannot write to {target.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            sha = hashlib.md5()
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha.digest() != md5:
            raise StorageError(f"{source} changed while it was uploaded (its MD5 is not the one announced)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- S3


class S3Blobs(Blobs):
    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def native_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def stored_md5(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot read {self.native_url(key)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {self.native_url(key)}: {exc}") from exc
        recorded = head.get("Metadata", {}).get("content-md5")
        if recorded:
            return _b64(recorded)
        etag = str(head.get("ETag", "")).strip('"')
        # A single-part upload's ETag is its MD5; a multipart one's is not (it has a "-N" suffix).
        return bytes.fromhex(etag) if len(etag) == 32 and "-" not in etag else b""

    def sign_put(
        self, key: str, *, md5: bytes, expires_in_s: float, md5_metadata: bool, base_url: str | None
    ) -> SignedPut:
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        headers: dict[str, str] = {}
        if md5:
            params["ContentMD5"] = base64.b64encode(md5).decode()
            if md5_metadata:
                params["Metadata"] = {"content-md5": params["ContentMD5"]}
                headers["x-amz-meta-content-md5"] = params["ContentMD5"]
        try:
            url = self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=int(expires_in_s), HttpMethod="PUT"
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot sign an upload to {self.native_url(key)}: {exc}") from exc
        return SignedPut(
            signed_url=str(url),
            native_url=self.native_url(key),
            expires_at=time.time() + expires_in_s,
            headers=headers,
        )


def open_blobs(url: str, *, client_factory: Any = None) -> Blobs:
    """`file://DIR` or `s3://BUCKET/PREFIX` (`client_factory()` gives the boto3 client)."""
    from deployer.errors import UsageError

    parts = urlsplit(url)
    if parts.scheme == "file":
        host = "" if parts.netloc in ("", "localhost") else parts.netloc
        path = unquote(host + parts.path)
        if not path:
            raise UsageError(f"storage {url!r}: file:// needs a directory")
        return FileBlobs(Path(path))
    if parts.scheme == "s3" and parts.netloc:
        client = client_factory() if client_factory is not None else _presigning_client()
        return S3Blobs(parts.netloc, parts.path, client)
    raise UsageError(f"storage {url!r}: expected file://DIR or s3://BUCKET/PREFIX")


def _presigning_client() -> Any:
    """The S3 client `--storage s3://` uses (endpoint, region, addressing, retries from the same settings),
    signing with SigV4: a SigV2 presigned URL carries Content-MD5 as a query parameter, which S3-compatible
    servers and the flyte SDK's PUT (Content-MD5 as a header) do not agree on."""
    import boto3
    from botocore.config import Config

    from deployer.storage import s3_client

    base = s3_client()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=base.meta.endpoint_url,
        region_name=base.meta.region_name,
        config=base.meta.config.merge(Config(signature_version="s3v4")),
    )

"""Blob storage for code bundles: content-addressed, deduplicated, verified.

Objects are named `<prefix>/<sha256>.tar.gz`, so an object that exists already holds exactly the
bytes an upload would send: it is reused, never uploaded again. Two backends behind one small
interface: `file://DIR` (the embedded default, under the state dir) and `s3://BUCKET/PREFIX`.

Reuse is verified, never assumed from the name: a stored object is reused only when its sha256 is the
one its name says (S3: the full-object SHA256 checksum S3 computed when the object was stored; else,
as for the file backend, the object's bytes hashed as they stream by). A corrupt copy is stored again.

S3 settings (`S3Options`) come from `deployer.settings` (`s3_endpoint_url`, `s3_addressing_style`,
`s3_max_attempts`); the region from AWS_REGION, else AWS_DEFAULT_REGION (default us-east-1).
Credentials come from boto3's default chain: environment keys, shared config/profiles, and
`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` (GitHub OIDC role assumption).

A killed deploy can leave a multipart upload open, which S3 keeps (and bills) until it is aborted.
Each multipart upload is recorded in a scratch directory of the state dir held by its process
(`deployer.scratch`): the next upload aborts those whose process is gone at once. Uploads started
elsewhere (another runner) are aborted once no part of theirs has arrived for `stale_upload_after`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from deployer.errors import StorageError, UsageError
from deployer.models import BundleArtifact
from deployer.progress import QUIET, Advance, Progress

if TYPE_CHECKING:
    from deployer.settings import Settings

S3Client = Any  # boto3 builds its client classes at runtime
SUFFIX = ".tar.gz"
PROGRESS_THRESHOLD = 4 << 20
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNK = 16 << 20
MIN_PART = 5 << 20  # S3's smallest part
DEFAULT_MAX_ATTEMPTS = 5
# Longer than any one part takes to arrive (16 MiB at 10 KiB/s is under half an hour).
STALE_UPLOAD_AFTER = 6 * 3600.0
UPLOAD_SCRATCH = "s3-upload-"
# A temporary copy older than this whose writer holds no lock on it is a leftover.
_TEMP_GRACE = 60.0
_CONTENT_NAME = re.compile(r"^([0-9a-f]{64})\.tar\.gz$")


def _file_digest(path: Path, on_chunk: Callable[[bytes], object] | None = None) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
    return sha.hexdigest()


def _expected_digest(name: str) -> str | None:
    """Content-addressed names carry their own checksum."""
    match = _CONTENT_NAME.match(name)
    return match.group(1) if match else None


@contextlib.contextmanager
def _bar(progress: Progress, label: str, size: int) -> Iterator[Advance]:
    """A transfer bar for large transfers only: small ones would only flicker."""
    if size < PROGRESS_THRESHOLD:
        yield _ignore
        return
    with progress.bar(label, size) as advance:
        yield advance


def _ignore(_units: int) -> None:
    pass


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: None means boto3's default (AWS) for the endpoint."""

    endpoint_url: str | None = None
    region: str | None = None
    """Default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1."""
    addressing_style: Literal["path", "virtual", "auto"] | None = None
    """Default: path with an endpoint, else auto."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    stale_upload_after: float = STALE_UPLOAD_AFTER
    """Seconds without a new part after which another run's multipart upload is aborted."""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options:
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            addressing_style=settings.s3_addressing_style,
            max_attempts=settings.s3_max_attempts,
        )

    @classmethod
    def from_environment(cls) -> S3Options:
        """The settings as the environment gives them (the default of callers that pass none)."""
        from deployer.settings import load_settings

        return cls.from_settings(load_settings())


class Storage(ABC):
    """Where bundles live. `upload` is idempotent: an intact existing object is reused."""

    url: str
    progress: Progress = QUIET

    @abstractmethod
    def uri_for(self, digest: str) -> str:
        """URI of the object holding the bundle with this sha256."""

    @abstractmethod
    def _stored_size(self, digest: str) -> int | None:
        """Size of the stored object, or None when there is none."""

    @abstractmethod
    def _stored_digest(self, digest: str) -> str:
        """sha256 (hex) of the stored object's bytes (which exists, with the expected size)."""

    @abstractmethod
    def _put(self, artifact: BundleArtifact) -> None:
        """Store the artifact's file; verify what was stored."""

    @abstractmethod
    def download(self, uri: str, dest: Path) -> Path:
        """Fetch `uri` into `dest` (a directory, or the file to write); returns the file."""

    def exists(self, digest: str) -> bool:
        return self._stored_size(digest) is not None

    def holds(self, digest: str, size: int) -> bool:
        """An intact copy of this bundle is stored: the size, then the sha256 of what is stored."""
        return self._check(digest, size) == "intact"

    def _check(self, digest: str, size: int) -> Literal["missing", "intact", "corrupt"]:
        stored = self._stored_size(digest)
        if stored is None:
            return "missing"
        if stored != size or self._stored_digest(digest) != digest:
            return "corrupt"
        return "intact"

    def upload(self, artifact: BundleArtifact) -> BundleArtifact:
        """Store the bundle unless an intact object with its digest is there already; a corrupt one
        (truncated, or other bytes under this name) is replaced."""
        uri = self.uri_for(artifact.digest)
        state = self._check(artifact.digest, artifact.size)
        if state == "intact":
            return artifact.model_copy(update={"uri": uri, "reused": True})
        if state == "corrupt":
            self.progress.warning(f"{uri} does not hold the bytes its name says: storing it again")
        try:
            actual = artifact.path.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot read bundle {artifact.path}: {exc.strerror}") from exc
        if actual != artifact.size:
            raise StorageError(
                f"bundle {artifact.path} is {actual} bytes, not {artifact.size}: "
                "it changed after it was built"
            )
        self._put(artifact)
        return artifact.model_copy(update={"uri": uri, "reused": False})


_TEMP_PREFIX = "."


def _sweep_temp_copies(directory: Path) -> None:
    """Remove the partial copies (`.<name>.<random>`) that killed runs left, when no live writer
    holds their lock and they are older than a creation's few microseconds between file and lock."""
    now = time.time()
    try:
        candidates = [
            p for p in directory.iterdir() if p.name.startswith(_TEMP_PREFIX) and SUFFIX + "." in p.name
        ]
    except OSError:
        return
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < _TEMP_GRACE:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except OSError:
            continue  # its writer is alive
        finally:
            os.close(fd)


def _download_target(uri: str, dest: Path) -> Path:
    name = Path(urlsplit(uri).path).name
    return dest / name if dest.is_dir() else dest


def _check_download(uri: str, digest: str) -> None:
    expected = _expected_digest(Path(urlsplit(uri).path).name)
    if expected is not None and digest != expected:
        raise StorageError(f"download of {uri} is corrupt: its sha256 is {digest}")


class FileStorage(Storage):
    """A directory on a local or mounted filesystem. Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, *, progress: Progress = QUIET) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()
        self.progress = progress

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}{SUFFIX}"

    def uri_for(self, digest: str) -> str:
        return self._path(digest).as_uri()

    def _stored_size(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read storage {self.root}: {exc.strerror}") from exc

    def _stored_digest(self, digest: str) -> str:
        return _file_digest(self._path(digest))

    def _copy(self, source: Path, target: Path, *, size: int, expected: str | None, label: str) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _sweep_temp_copies(target.parent)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{_TEMP_PREFIX}{target.name}.")
            # Held while the copy is written: a sweeper never takes the copy of a live run.
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise StorageError(f"cannot write to {target.parent}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as out, _bar(self.progress, label, size) as bar:

                def write(chunk: bytes) -> None:
                    out.write(chunk)
                    bar(len(chunk))

                digest = _file_digest(source, write)
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and digest != expected:
                raise StorageError(
                    f"{source} does not match its sha256 {expected}: it changed after it was built"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _put(self, artifact: BundleArtifact) -> None:
        self._copy(
            artifact.path,
            self._path(artifact.digest),
            size=artifact.size,
            expected=artifact.digest,
            label="upload",
        )

    def download(self, uri: str, dest: Path) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise StorageError(f"cannot download {uri} from file storage {self.url}")
        source = Path(unquote(parts.path))
        target = _download_target(uri, dest)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot download {uri}: {exc.strerror}") from exc
        expected = _expected_digest(source.name)
        self._copy(source, target, size=size, expected=expected, label="download")
        return target


class S3Storage(Storage):
    """An S3 (or S3-compatible) bucket and key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        progress: Progress = QUIET,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        journal: Path | None = None,
        stale_upload_after: float = STALE_UPLOAD_AFTER,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client
        self.progress = progress
        # Below this size one PUT carries the whole object and S3 checks it against our sha256.
        self.multipart_threshold = multipart_threshold
        # Where this machine records its multipart uploads (the state dir); None: not recorded.
        self.journal = journal
        self.stale_upload_after = stale_upload_after

    def _key(self, digest: str) -> str:
        name = f"{digest}{SUFFIX}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri_for(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self._key(digest)}"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """botocore's exceptions, as one line naming the object and the cause."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        attempts = (self.client.meta.config.retries or {}).get("total_max_attempts")
        try:
            yield
        except NoCredentialsError as exc:
            raise StorageError(
                f"cannot {action}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a profile, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE)"
            ) from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "?")
            message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            tail = f" (tried {retries + 1} times)" if retries else ""
            raise StorageError(f"cannot {action}: {code} {message}{tail}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action}: {exc} (tried {attempts} times)") from exc
        except Boto3Error as exc:  # s3transfer's wrapper around the failures above
            raise StorageError(f"cannot {action}: {exc}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        with self._errors(f"read s3://{self.bucket}/{key}"):
            try:
                return dict(self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def _stored_size(self, digest: str) -> int | None:
        head = self._head(self._key(digest))
        return None if head is None else int(head["ContentLength"])

    def _check(self, digest: str, size: int) -> Literal["missing", "intact", "corrupt"]:
        key = self._key(digest)
        head = self._head(key)
        if head is None:
            return "missing"
        if int(head["ContentLength"]) != size:
            return "corrupt"
        return "intact" if self._stored_sha256(key, head) == digest else "corrupt"

    def _stored_digest(self, digest: str) -> str:
        key = self._key(digest)
        head = self._head(key)
        if head is None:
            raise StorageError(f"s3://{self.bucket}/{key} vanished while it was being checked")
        return self._stored_sha256(key, head)

    def _stored_sha256(self, key: str, head: dict[str, Any]) -> str:
        """The full-object SHA256 S3 computed when the object was stored (every single-PUT bundle has
        one); otherwise (multipart, or stored without a checksum) the sha256 of its bytes, streamed."""
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            return base64.b64decode(checksum).hex()
        sha = hashlib.sha256()
        uri = f"s3://{self.bucket}/{key}"
        with self._errors(f"read {uri}"), _bar(self.progress, "verify", int(head["ContentLength"])) as bar:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(1 << 20):
                sha.update(chunk)
                bar(len(chunk))
        return sha.hexdigest()

    def _put(self, artifact: BundleArtifact) -> None:
        from boto3.s3.transfer import TransferConfig

        key = self._key(artifact.digest)
        # Hash what is about to be sent: a file that changed since it was built is never stored.
        local = _file_digest(artifact.path)
        if local != artifact.digest:
            raise StorageError(
                f"{artifact.path} does not match its sha256 {artifact.digest}: it changed after it was built"
            )
        extra: dict[str, Any] = {"ContentType": "application/gzip", "Metadata": {"sha256": artifact.digest}}
        if artifact.size < self.multipart_threshold:
            # S3 recomputes this over the bytes it receives and refuses the object if they differ.
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(artifact.digest)).decode()
        else:
            extra["ChecksumAlgorithm"] = "SHA256"  # checked by S3 part by part
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=min(MULTIPART_CHUNK, max(MIN_PART, self.multipart_threshold)),
            max_concurrency=4,
        )
        with (
            self._errors(f"upload {artifact.path.name} to s3://{self.bucket}/{key}"),
            self._recorded(multipart=artifact.size >= self.multipart_threshold),
            _bar(self.progress, "upload", artifact.size) as advance,
        ):
            self.client.upload_file(
                str(artifact.path), self.bucket, key, ExtraArgs=extra, Callback=advance, Config=config
            )
        self._verify(key, artifact)

    # -- multipart uploads that killed runs left open ----------------------------------------------

    @contextlib.contextmanager
    def _recorded(self, *, multipart: bool) -> Iterator[None]:
        """Abort what dead runs left open, then record this upload's id while it runs."""
        from deployer.scratch import held_dir, sweep

        if self.journal is not None:
            sweep(
                self.journal, UPLOAD_SCRATCH, reclaim=self._abort_recorded
            )  # local: no request unless one died
        if multipart:
            self._abort_stale()
        if not multipart or self.journal is None:
            yield
            return

        with held_dir(self.journal, UPLOAD_SCRATCH, reclaim=self._abort_recorded) as record:

            def remember(parsed: dict[str, Any], **_: Any) -> None:
                upload = {
                    "bucket": parsed.get("Bucket"),
                    "key": parsed.get("Key"),
                    "id": parsed.get("UploadId"),
                }
                (record / "upload.json").write_text(json.dumps(upload))

            event = "after-call.s3.CreateMultipartUpload"
            self.client.meta.events.register(event, remember)
            try:
                yield
            finally:
                self.client.meta.events.unregister(event, remember)

    def _abort_recorded(self, record: Path) -> bool:
        """A dead run's upload, from its record: aborted (True), or kept for later when S3 fails."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            upload = json.loads((record / "upload.json").read_text())
        except (OSError, ValueError):
            return True  # killed before S3 gave it an upload id: nothing to abort
        if upload.get("bucket") != self.bucket:
            return False  # another storage's: its own next upload aborts it
        try:
            self.client.abort_multipart_upload(
                Bucket=upload["bucket"], Key=upload["key"], UploadId=upload["id"]
            )
        except ClientError as exc:
            return exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404")
        except BotoCoreError:
            return False
        return True

    def _abort_stale(self) -> None:
        """Abort multipart uploads of bundles under this prefix that no part has reached for
        `stale_upload_after` seconds: their runs are gone (a live upload sends a part every few seconds)."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.prefix}/" if self.prefix else ""
        now = time.time()
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    if not _CONTENT_NAME.match(key[len(prefix) :]):
                        continue
                    last = upload["Initiated"].timestamp()
                    parts = self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    last = max([last, *(part["LastModified"].timestamp() for part in parts.get("Parts", []))])
                    if now - last >= self.stale_upload_after:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # housekeeping: a bucket that refuses listing still takes uploads

    def _verify(self, key: str, artifact: BundleArtifact) -> None:
        head = self._head(key)
        uri = f"s3://{self.bucket}/{key}"
        if head is None:
            raise StorageError(f"upload of {uri} did not land: the object is missing afterwards")
        if int(head["ContentLength"]) != artifact.size:
            raise StorageError(
                f"upload of {uri} is corrupt: {head['ContentLength']} bytes, not {artifact.size}"
            )
        stored = head.get("ChecksumSHA256")
        expected = base64.b64encode(bytes.fromhex(artifact.digest)).decode()
        single_part = artifact.size < self.multipart_threshold
        if stored and "-" not in stored and single_part and stored != expected:
            raise StorageError(
                f"upload of {uri} is corrupt: the stored sha256 differs from {artifact.digest}"
            )

    def download(self, uri: str, dest: Path) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageError(f"cannot download {uri} from S3 storage {self.url}")
        bucket, key = parts.netloc, parts.path.lstrip("/")
        target = _download_target(uri, dest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write to {target.parent}: {exc.strerror}") from exc
        try:
            with self._errors(f"download {uri}"):
                self.client.download_file(bucket, key, tmp)
            _check_download(uri, _file_digest(Path(tmp)))
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def download_tree(self, uri: str, dest: Path) -> Path:
        """Every object under the prefix `uri` names, at its relative key under `dest`."""
        parts = urlsplit(uri)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        with self._errors(f"list {uri}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            listed = [item["Key"] for page in pages for item in page.get("Contents", [])]
        # A key ending in "/" is the "folder" marker some tools write, not a file.
        keys = [key for key in listed if not key.endswith("/")]
        if not keys:
            raise StorageError(f"cannot download {uri}: no objects under it")
        for key in keys:
            relative = key[len(prefix) :]
            if any(part in ("", ".", "..") for part in relative.split("/")):
                raise StorageError(f"cannot download {uri}: its key {key!r} leads out of the folder")
        for key in keys:
            self.download(f"s3://{bucket}/{key}", dest / key[len(prefix) :])
        return dest


def fetch(uri: str, dest: Path, *, tree: bool, s3: S3Options | None = None) -> Path | None:
    """A storage object (or, with `tree`, everything under a prefix) copied to `dest` with the caller's
    credentials; None when `uri` is not in a storage this tool reads (the URI is then used as it is)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        return None
    storage = S3Storage(parts.netloc, "", s3_client(s3))
    if tree:
        return storage.download_tree(uri, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return storage.download(uri, dest)


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def s3_client(options: S3Options | None = None) -> S3Client:
    """A boto3 S3 client with bounded retries (exponential backoff with jitter on throttling,
    5xx and connection errors). Default options: `S3Options.from_environment()`."""
    import boto3
    from botocore.config import Config

    options = options if options is not None else S3Options.from_environment()
    region = options.region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    style = options.addressing_style or ("path" if options.endpoint_url else "auto")
    if options.max_attempts < 1:
        raise UsageError(f"S3 max attempts {options.max_attempts}: expected a whole number >= 1")
    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": options.max_attempts},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": style},
    )
    return boto3.session.Session().client("s3", endpoint_url=options.endpoint_url, config=config)


def open_storage(
    url: str | None,
    *,
    state_dir: Path,
    s3: S3Options | None = None,
    progress: Progress = QUIET,
) -> Storage:
    """`file://DIR`, `s3://BUCKET/PREFIX`, or None for `file://<state_dir>/bundles`.

    `s3`: how to reach S3 (default: `S3Options.from_environment()`); `progress` gets a bar for each
    large transfer. Multipart uploads are recorded under `state_dir` while they run.
    """
    if url is None:
        return FileStorage(state_dir / "bundles", progress=progress)
    parts = urlsplit(url)
    if parts.scheme == "file":
        # `file:///abs`, `file://localhost/abs`, and the relative `file://dir` all name a directory.
        host = "" if parts.netloc in ("", "localhost") else parts.netloc
        path = unquote(host + parts.path)
        if not path:
            raise UsageError(f"--storage {url!r}: file:// needs a directory")
        return FileStorage(Path(path), progress=progress)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"--storage {url!r}: s3:// needs a bucket, as in s3://BUCKET/PREFIX")
        options = s3 if s3 is not None else S3Options.from_environment()
        return S3Storage(
            parts.netloc,
            parts.path,
            s3_client(options),
            progress=progress,
            journal=state_dir,
            stale_upload_after=options.stale_upload_after,
        )
    raise UsageError(f"--storage {url!r}: expected file://DIR or s3://BUCKET/PREFIX")

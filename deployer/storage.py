"""Blob storage for code bundles: content-addressed, deduplicated, verified.

Objects are named `<prefix>/<sha256>.tar.gz`, so an object that exists already holds exactly the
bytes an upload would send: it is reused, never uploaded again. Two backends behind one small
interface: `file://DIR` (the embedded default, under the state dir) and `s3://BUCKET/PREFIX`.

S3 settings come from the environment (the CLI may pass the first three as keyword arguments):
    FLYTE_DEPLOY_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL
        an S3-compatible endpoint (default: AWS)
    AWS_REGION, else AWS_DEFAULT_REGION          region (default us-east-1)
    FLYTE_DEPLOY_S3_ADDRESSING_STYLE             path, virtual or auto
        (default: path when an endpoint is set, else auto)
    FLYTE_DEPLOY_S3_MAX_ATTEMPTS                 attempts per request, with exponential backoff
        between them, on throttling, 5xx and connection errors (default 5)
    FLYTE_DEPLOY_PROGRESS=1                      progress bars even when stderr is not a terminal

Credentials come from boto3's default chain: environment keys, shared config/profiles, and
`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` (GitHub OIDC role assumption).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deployer.errors import StorageError, UsageError
from deployer.models import BundleArtifact

S3Client = Any  # boto3 builds its client classes at runtime
SUFFIX = ".tar.gz"
PROGRESS_THRESHOLD = 4 << 20
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNK = 16 << 20
MIN_PART = 5 << 20  # S3's smallest part
DEFAULT_MAX_ATTEMPTS = 5
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


def _show_progress(size: int, progress: bool | None) -> bool:
    if progress is not None:
        return progress and size >= PROGRESS_THRESHOLD
    wanted = os.environ.get("FLYTE_DEPLOY_PROGRESS", "").lower() in ("1", "true", "yes")
    return size >= PROGRESS_THRESHOLD and (wanted or sys.stderr.isatty())


@contextlib.contextmanager
def _progress(label: str, size: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A callback taking byte counts; draws a rich bar on stderr when enabled."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = (label, BarColumn(), DownloadColumn(), TransferSpeedColumn())
    console = Console(stderr=True)
    # On a terminal the bar disappears when done; in a CI log its final state stays as a record.
    with Progress(*columns, console=console, transient=console.is_terminal) as bar:
        task = bar.add_task(label, total=size)
        yield lambda n: bar.advance(task, n)


class Storage(ABC):
    """Where bundles live. `upload` is idempotent: an existing object is reused."""

    url: str

    @abstractmethod
    def uri_for(self, digest: str) -> str:
        """URI of the object holding the bundle with this sha256."""

    @abstractmethod
    def _stored_size(self, digest: str) -> int | None:
        """Size of the stored object, or None when there is none."""

    @abstractmethod
    def _put(self, artifact: BundleArtifact) -> None:
        """Store the artifact's file; verify what was stored."""

    @abstractmethod
    def download(self, uri: str, dest: Path) -> Path:
        """Fetch `uri` into `dest` (a directory, or the file to write); returns the file."""

    def exists(self, digest: str) -> bool:
        return self._stored_size(digest) is not None

    def holds(self, digest: str, size: int) -> bool:
        """A complete copy of this bundle is stored (its key names the digest; the size rules out a
        partial object)."""
        return self._stored_size(digest) == size

    def upload(self, artifact: BundleArtifact) -> BundleArtifact:
        """Store the bundle unless an object with its digest (and size) is there already."""
        uri = self.uri_for(artifact.digest)
        if self.holds(artifact.digest, artifact.size):
            return artifact.model_copy(update={"uri": uri, "reused": True})
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


def _download_target(uri: str, dest: Path) -> Path:
    name = Path(urlsplit(uri).path).name
    return dest / name if dest.is_dir() else dest


def _check_download(uri: str, digest: str) -> None:
    expected = _expected_digest(Path(urlsplit(uri).path).name)
    if expected is not None and digest != expected:
        raise StorageError(f"download of {uri} is corrupt: its sha256 is {digest}")


class FileStorage(Storage):
    """A directory on a local or mounted filesystem. Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, *, progress: bool | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()
        self._progress = progress

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

    def _copy(self, source: Path, target: Path, *, size: int, expected: str | None, label: str) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        except OSError as exc:
            raise StorageError(f"cannot write to {target.parent}: {exc.strerror}") from exc
        try:
            show = _show_progress(size, self._progress)
            with os.fdopen(fd, "wb") as out, _progress(label, size, show) as bar:

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
        progress: bool | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client
        self._progress = progress
        # Below this size one PUT carries the whole object and S3 checks it against our sha256.
        self.multipart_threshold = multipart_threshold

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
        show = _show_progress(artifact.size, self._progress)
        with (
            self._errors(f"upload {artifact.path.name} to s3://{self.bucket}/{key}"),
            _progress("upload", artifact.size, show) as advance,
        ):
            self.client.upload_file(
                str(artifact.path), self.bucket, key, ExtraArgs=extra, Callback=advance, Config=config
            )
        self._verify(key, artifact)

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


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def s3_client(
    *, endpoint_url: str | None = None, region: str | None = None, addressing_style: str | None = None
) -> S3Client:
    """A boto3 S3 client with bounded retries (exponential backoff with jitter on throttling,
    5xx and connection errors)."""
    import boto3
    from botocore.config import Config

    endpoint_url = endpoint_url or _env(
        "FLYTE_DEPLOY_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
    )
    region = region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    style = addressing_style or _env("FLYTE_DEPLOY_S3_ADDRESSING_STYLE")
    style = style or ("path" if endpoint_url else "auto")
    if style not in ("path", "virtual", "auto"):
        raise UsageError(f"FLYTE_DEPLOY_S3_ADDRESSING_STYLE={style!r}: expected path, virtual or auto")
    raw_attempts = _env("FLYTE_DEPLOY_S3_MAX_ATTEMPTS") or str(DEFAULT_MAX_ATTEMPTS)
    if not raw_attempts.isdigit() or int(raw_attempts) < 1:
        raise UsageError(f"FLYTE_DEPLOY_S3_MAX_ATTEMPTS={raw_attempts!r}: expected a whole number >= 1")
    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": int(raw_attempts)},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": style},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def open_storage(
    url: str | None,
    *,
    state_dir: Path,
    progress: bool | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    addressing_style: str | None = None,
) -> Storage:
    """`file://DIR`, `s3://BUCKET/PREFIX`, or None for `file://<state_dir>/bundles`.

    `progress`: None draws a bar for large transfers when stderr is a terminal (or
    FLYTE_DEPLOY_PROGRESS=1); True/False force it on/off.
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
        client = s3_client(endpoint_url=endpoint_url, region=region, addressing_style=addressing_style)
        return S3Storage(parts.netloc, parts.path, client, progress=progress)
    raise UsageError(f"--storage {url!r}: expected file://DIR or s3://BUCKET/PREFIX")

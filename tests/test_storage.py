"""Bundle storage: the file backend and S3 (the stack's S3 server), dedup, integrity, retries."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from deployer import storage as storage_module
from deployer.bundle import build_bundle
from deployer.errors import StorageError, UsageError
from deployer.models import BundleArtifact
from deployer.progress import NullProgress, RecordingProgress
from deployer.storage import FileStorage, S3Storage, open_storage
from tests.fixtures.bundle import MakeTree

S3_ENV = ("FLYTE_DEPLOY_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION")


def _artifact(make_tree: MakeTree, out: Path, *, size: int = 2_000, seed: int = 0) -> BundleArtifact:
    """A real bundle of `size` random (incompressible) bytes."""
    root = make_tree({"blob.bin": random.Random(seed).randbytes(size)}, name=f"p{seed}")
    return build_bundle(root, ["blob.bin"], out)


# --------------------------------------------------------------------------- file backend


def test_file_storage_defaults_to_the_state_dir_and_dedups(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(None, state_dir=tmp_path / "state")
    stored = tmp_path / "state" / "bundles" / f"{artifact.digest}.tar.gz"
    assert storage.uri_for(artifact.digest) == stored.as_uri()
    assert not storage.exists(artifact.digest)

    first = storage.upload(artifact)
    assert (first.uri, first.reused) == (stored.as_uri(), False)
    assert stored.read_bytes() == artifact.path.read_bytes()
    assert storage.exists(artifact.digest)
    inode = stored.stat().st_ino

    second = storage.upload(artifact)
    assert (second.uri, second.reused) == (stored.as_uri(), True)
    assert stored.stat().st_ino == inode, "a reused object is not rewritten"
    assert sorted(p.name for p in stored.parent.iterdir()) == [stored.name], "no temp files left"


def test_file_storage_replaces_a_truncated_object(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(f"file://{tmp_path}/store", state_dir=tmp_path / "state")
    stored = tmp_path / "store" / f"{artifact.digest}.tar.gz"
    stored.parent.mkdir()
    stored.write_bytes(artifact.path.read_bytes()[:10])
    assert storage.upload(artifact).reused is False
    assert stored.read_bytes() == artifact.path.read_bytes()


def test_a_same_size_corrupt_object_is_never_reused(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    progress = RecordingProgress()
    storage = FileStorage(tmp_path / "store", progress=progress)
    stored = tmp_path / "store" / f"{artifact.digest}.tar.gz"
    storage.upload(artifact)
    stored.write_bytes(bytes(b ^ 0xFF for b in stored.read_bytes()))
    assert storage.exists(artifact.digest) and not storage.holds(artifact.digest, artifact.size)
    assert storage.upload(artifact).reused is False
    assert stored.read_bytes() == artifact.path.read_bytes()
    assert progress.lines == [
        f"warning: {stored.as_uri()} does not hold the bytes its name says: storing it again"
    ]
    assert storage.holds(artifact.digest, artifact.size)


def test_a_bundle_changed_after_its_build_is_never_stored(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    data = bytearray(artifact.path.read_bytes())
    data[-1] ^= 0xFF
    artifact.path.write_bytes(bytes(data))
    storage = open_storage(f"file://{tmp_path}/store", state_dir=tmp_path)
    with pytest.raises(StorageError, match=r"does not match its sha256 .*: it changed after it was built"):
        storage.upload(artifact)
    assert not storage.exists(artifact.digest)
    assert list((tmp_path / "store").iterdir()) == [], "the temp file is removed"


def test_file_storage_download_verifies_content(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(f"file://{tmp_path}/store", state_dir=tmp_path)
    uri = storage.upload(artifact).uri
    assert uri is not None
    (tmp_path / "dl").mkdir()
    into_dir = storage.download(uri, tmp_path / "dl")
    assert into_dir == tmp_path / "dl" / f"{artifact.digest}.tar.gz"
    assert into_dir.read_bytes() == artifact.path.read_bytes()
    named = storage.download(uri, tmp_path / "dl" / "code.tgz")
    assert named.read_bytes() == artifact.path.read_bytes()

    stored = tmp_path / "store" / f"{artifact.digest}.tar.gz"
    stored.write_bytes(b"\0" * artifact.size)
    with pytest.raises(StorageError, match=r"does not match its sha256"):
        storage.download(uri, tmp_path / "dl" / "again.tgz")
    assert not (tmp_path / "dl" / "again.tgz").exists()


def test_storage_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_storage(f"file://{tmp_path}/abs", state_dir=tmp_path), FileStorage)
    relative = open_storage("file://rel/dir", state_dir=tmp_path)
    assert relative.url == (tmp_path / "rel" / "dir").as_uri()
    for url, message in (
        ("ftp://host/x", r"--storage 'ftp://host/x': expected file://DIR or s3://BUCKET/PREFIX"),
        ("s3:///prefix", r"--storage 's3:///prefix': s3:// needs a bucket"),
        ("/just/a/path", r"--storage '/just/a/path': expected file://DIR"),
    ):
        with pytest.raises(UsageError, match=message):
            open_storage(url, state_dir=tmp_path)


class _Bars(NullProgress):
    """Records every transfer bar: (label, total, units advanced)."""

    def __init__(self) -> None:
        self.bars: list[list[Any]] = []

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        record: list[Any] = [label, total, 0]
        self.bars.append(record)

        def advance(units: int) -> None:
            record[2] += units

        yield advance


def test_progress_bar_for_large_uploads(make_tree: MakeTree, tmp_path: Path) -> None:
    artifact = _artifact(make_tree, tmp_path / "build", size=5 << 20)
    progress = _Bars()
    FileStorage(tmp_path / "store", progress=progress).upload(artifact)
    assert progress.bars == [["upload", artifact.size, artifact.size]]
    small = _artifact(make_tree, tmp_path / "build", size=1_000, seed=1)
    FileStorage(tmp_path / "store", progress=progress).upload(small)
    assert len(progress.bars) == 1, "no bar for small uploads"


# --------------------------------------------------------------------------- S3


@pytest.fixture
def s3_env(stack_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the S3 backend at the stack's server through FLYTE_DEPLOY_S3_ENDPOINT_URL."""
    for name in S3_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYTE_DEPLOY_S3_ENDPOINT_URL", stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])
    return f"s3://{s3_bucket}/bundles-test/{uuid.uuid4().hex[:12]}"


def _count_puts(storage: Any) -> list[str]:
    calls: list[str] = []
    for operation in ("PutObject", "CreateMultipartUpload"):
        storage.client.meta.events.register(
            f"before-call.s3.{operation}", lambda operation=operation, **_: calls.append(operation)
        )
    return calls


@pytest.mark.stack
def test_s3_upload_dedup_and_download(
    make_tree: MakeTree, tmp_path: Path, s3_env: str, s3_client: Any, s3_bucket: str
) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(s3_env, state_dir=tmp_path)
    key = f"{urlsplit(s3_env).path.lstrip('/')}/{artifact.digest}.tar.gz"
    puts = _count_puts(storage)
    assert not storage.exists(artifact.digest)

    first = storage.upload(artifact)
    assert (first.uri, first.reused) == (f"s3://{s3_bucket}/{key}", False)
    stored = s3_client.get_object(Bucket=s3_bucket, Key=key)
    assert stored["Body"].read() == artifact.path.read_bytes()
    assert stored["Metadata"] == {"sha256": artifact.digest}
    assert stored["ContentType"] == "application/gzip"

    second = storage.upload(artifact)
    assert (second.uri, second.reused) == (first.uri, True)
    assert puts == ["PutObject"], "the second upload sent nothing"

    downloaded = storage.download(first.uri, tmp_path / "dl.tar.gz")
    assert downloaded.read_bytes() == artifact.path.read_bytes()

    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"\0" * artifact.size)
    with pytest.raises(StorageError, match=r"download of s3://.* is corrupt"):
        storage.download(first.uri, tmp_path / "corrupt.tar.gz")
    assert not (tmp_path / "corrupt.tar.gz").exists()


def _count_gets(storage: Any) -> list[str]:
    calls: list[str] = []
    storage.client.meta.events.register("before-call.s3.GetObject", lambda **_: calls.append("GetObject"))
    return calls


@pytest.mark.stack
def test_s3_reuse_verifies_the_stored_sha256(
    make_tree: MakeTree, tmp_path: Path, s3_env: str, s3_client: Any, s3_bucket: str
) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(s3_env, state_dir=tmp_path)
    key = f"{urlsplit(s3_env).path.lstrip('/')}/{artifact.digest}.tar.gz"
    storage.upload(artifact)
    assert storage.holds(artifact.digest, artifact.size)

    # (The stack's S3 server keeps no checksums, so each check below reads the object's bytes.)
    corrupt = bytes(b ^ 0xFF for b in artifact.path.read_bytes())
    own_checksum = base64.b64encode(hashlib.sha256(corrupt).digest()).decode()
    for extra in ({"ChecksumSHA256": own_checksum}, {}):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=corrupt, **extra)
        assert storage.exists(artifact.digest) and not storage.holds(artifact.digest, artifact.size)
    assert storage.upload(artifact).reused is False
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == artifact.path.read_bytes()
    assert storage.holds(artifact.digest, artifact.size)

    # Where S3 keeps the full-object SHA256 it computed (AWS does), that is read instead of the bytes.
    gets = _count_gets(storage)
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    stored = base64.b64encode(bytes.fromhex(artifact.digest)).decode()
    full_object = {**head, "ChecksumSHA256": stored, "ChecksumType": "FULL_OBJECT"}
    assert storage._stored_sha256(key, full_object) == artifact.digest  # type: ignore[attr-defined]
    assert gets == []
    composite = {**head, "ChecksumSHA256": f"{stored}-3", "ChecksumType": "COMPOSITE"}
    assert storage._stored_sha256(key, composite) == artifact.digest  # type: ignore[attr-defined]
    assert gets == ["GetObject"], "a multipart checksum does not name the bytes: they are read"


@pytest.mark.stack
def test_s3_multipart_uploads_left_open_by_dead_runs_are_aborted(
    make_tree: MakeTree, tmp_path: Path, s3_env: str, s3_client: Any, s3_bucket: str
) -> None:
    bucket, prefix = urlsplit(s3_env).netloc, urlsplit(s3_env).path.strip("/")

    def open_upload(name: str) -> str:
        upload = s3_client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/{name}")["UploadId"]
        s3_client.upload_part(Bucket=bucket, Key=f"{prefix}/{name}", UploadId=upload, PartNumber=1, Body=b"x")
        return upload

    def open_uploads() -> set[str]:
        listed = s3_client.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/")
        return {u["Key"].rsplit("/", 1)[-1] for u in listed.get("Uploads", [])}

    recent, other = f"{'1' * 64}.tar.gz", "not-a-bundle.bin"
    open_upload(recent)
    open_upload(other)
    # Recorded by a run of this machine that died (its record is no longer locked by anyone).
    dead = f"{'2' * 64}.tar.gz"
    record = tmp_path / "state" / "s3-upload-deadbeef0000"
    record.mkdir(parents=True)
    upload_id = open_upload(dead)
    (record / "upload.json").write_text(
        json.dumps({"bucket": bucket, "key": f"{prefix}/{dead}", "id": upload_id})
    )

    def upload(stale_after: float, seed: int) -> None:
        storage = S3Storage(
            bucket,
            prefix,
            storage_module.s3_client(),
            multipart_threshold=5 << 20,
            journal=tmp_path / "state",
            stale_upload_after=stale_after,
        )
        storage.upload(_artifact(make_tree, tmp_path / "build", size=6 << 20, seed=seed))

    upload(3600.0, seed=1)
    assert open_uploads() == {recent, other}, "the dead run's upload is aborted, a recent one is not"
    assert not record.exists() and not list((tmp_path / "state").iterdir())
    upload(0.0, seed=2)
    assert open_uploads() == {other}, "bundle uploads without a new part for too long are aborted"


def test_scratch_sweep_removes_only_directories_whose_owner_is_gone(tmp_path: Path) -> None:
    from deployer.scratch import held_dir, sweep
    from tests.fixtures.hardening import live_scratch_dir

    dead_locked = tmp_path / "bundle-aaaa"
    dead_locked.mkdir()
    (tmp_path / "bundle-aaaa.lock").write_text("")  # its owner was killed: nobody holds the lock
    unlocked = tmp_path / "bundle-bbbb"  # left by a version without locks
    unlocked.mkdir()
    (tmp_path / "other").mkdir()
    with live_scratch_dir(tmp_path, "bundle-") as live, held_dir(tmp_path, "bundle-") as mine:
        assert not dead_locked.exists() and not unlocked.exists(), "held_dir sweeps first"
        assert sweep(tmp_path, "bundle-") == []
        assert live.is_dir() and mine.is_dir() and (tmp_path / "other").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


@pytest.mark.stack
def test_s3_multipart_upload(
    make_tree: MakeTree, tmp_path: Path, s3_env: str, s3_client: Any, s3_bucket: str
) -> None:
    artifact = _artifact(make_tree, tmp_path / "build", size=11 << 20)
    bucket, prefix = urlsplit(s3_env).netloc, urlsplit(s3_env).path
    storage = S3Storage(bucket, prefix, storage_module.s3_client(), multipart_threshold=5 << 20)
    puts = _count_puts(storage)
    uploaded = storage.upload(artifact)
    assert puts == ["CreateMultipartUpload"]
    assert uploaded.uri is not None
    body = s3_client.get_object(Bucket=s3_bucket, Key=uploaded.uri.split("/", 3)[3])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == artifact.digest


@pytest.mark.stack
def test_s3_settings_come_from_the_environment(
    stack_env: dict[str, str], s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*S3_ENV, "FLYTE_DEPLOY_S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    storage = open_storage(f"s3://{s3_bucket}/env-test", state_dir=tmp_path)
    assert storage.client.meta.region_name == "eu-west-3"  # type: ignore[attr-defined]
    endpoint = storage.client.meta.endpoint_url  # type: ignore[attr-defined]
    assert endpoint == stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]
    assert not storage.exists("0" * 64)
    monkeypatch.setenv("FLYTE_DEPLOY_S3_ADDRESSING_STYLE", "sideways")
    with pytest.raises(UsageError, match=r"FLYTE_DEPLOY_S3_ADDRESSING_STYLE='sideways'"):
        open_storage(f"s3://{s3_bucket}/env-test", state_dir=tmp_path)


@pytest.mark.stack
def test_s3_missing_bucket_is_one_clear_error(make_tree: MakeTree, tmp_path: Path, s3_env: str) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    storage = open_storage(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/p", state_dir=tmp_path)
    missing = r"cannot upload .* to s3://no-such-bucket-.*NoSuchBucket"
    with pytest.raises(StorageError, match=missing) as caught:
        storage.upload(artifact)
    assert "\n" not in str(caught.value)


class _FlakyS3(http.server.ThreadingHTTPServer):
    """A proxy in front of the real S3 server that fails requests on a schedule first.

    `faults` maps an HTTP method to what its next requests get: "drop" closes the connection
    without an answer (the server looks down), "503" answers SlowDown; then requests pass through.
    """

    daemon_threads = True

    def __init__(self, upstream: str, faults: dict[str, list[str]]) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = {method: list(queue) for method, queue in faults.items()}
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _FlakyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_fault(self, method: str) -> str | None:
        with self.lock:
            queue = self.faults.get(method, [])
            fault = queue.pop(0) if queue else None
            self.seen.append((method, fault or "passed"))
            return fault


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FlakyS3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.next_fault(self.command)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "503":
            payload = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        target = self.server.upstream
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                upstream.putheader(name, value)
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


@pytest.fixture
def flaky_s3(stack_env: dict[str, str], s3_bucket: str) -> Iterator[Any]:
    servers: list[_FlakyS3] = []

    def start(faults: dict[str, list[str]]) -> _FlakyS3:
        server = _FlakyS3(stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"], faults)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.stack
def test_s3_upload_retries_until_the_server_answers(
    make_tree: MakeTree,
    tmp_path: Path,
    s3_env: str,
    s3_client: Any,
    s3_bucket: str,
    flaky_s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    proxy = flaky_s3({"HEAD": ["drop"], "PUT": ["503", "drop"]})
    monkeypatch.setenv("FLYTE_DEPLOY_S3_ENDPOINT_URL", proxy.url)
    uploaded = open_storage(s3_env, state_dir=tmp_path).upload(artifact)
    assert uploaded.reused is False
    assert proxy.seen[:5] == [
        ("HEAD", "drop"),
        ("HEAD", "passed"),
        ("PUT", "503"),
        ("PUT", "drop"),
        ("PUT", "passed"),
    ]
    assert uploaded.uri is not None
    key = uploaded.uri.split("/", 3)[3]
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == artifact.path.read_bytes()


@pytest.mark.stack
def test_s3_gives_up_with_one_line_after_bounded_retries(
    make_tree: MakeTree, tmp_path: Path, s3_env: str, flaky_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = _artifact(make_tree, tmp_path / "build")
    monkeypatch.setenv("FLYTE_DEPLOY_S3_MAX_ATTEMPTS", "2")

    proxy = flaky_s3({"HEAD": ["503"] * 10})
    monkeypatch.setenv("FLYTE_DEPLOY_S3_ENDPOINT_URL", proxy.url)
    throttled = r"cannot read s3://.*\.tar\.gz: 503 .*\(tried 2 times\)"
    with pytest.raises(StorageError, match=throttled) as caught:
        open_storage(s3_env, state_dir=tmp_path).upload(artifact)
    assert "\n" not in str(caught.value)
    assert proxy.seen == [("HEAD", "503"), ("HEAD", "503")]

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("FLYTE_DEPLOY_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    unreachable = r"Could not connect to the endpoint URL.*\(tried 2 times\)"
    with pytest.raises(StorageError, match=unreachable) as caught:
        open_storage(s3_env, state_dir=tmp_path).upload(artifact)
    assert "\n" not in str(caught.value)


@pytest.mark.stack
def test_s3_credentials_from_a_github_oidc_role(
    make_tree: MakeTree,
    tmp_path: Path,
    s3_env: str,
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No static keys: the default chain assumes AWS_ROLE_ARN with the web identity token, as a
    GitHub job with `id-token: write` does (STS here is the stack's moto server)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    token = tmp_path / "oidc-token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJyZXBvOmFjbWUvYXBwOnJlZjpyZWZzL2hlYWRzL21haW4ifQ.")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/flyte-deploy")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])

    storage = open_storage(s3_env, state_dir=tmp_path)
    uploaded = storage.upload(_artifact(make_tree, tmp_path / "build"))
    assert uploaded.reused is False and storage.exists(uploaded.digest)
    credentials = storage.client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.method == "assume-role-with-web-identity"

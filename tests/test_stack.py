"""Smoke tests: every component of the test stack is real (and would fail if faked or absent)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import urllib.request
import uuid

import pytest

from tests.fixtures.stack import MANIFEST_ACCEPT, registry_manifest_digest, stack_unavailable


def _push(docker_client, repository: str, tag: str) -> str:
    """Push and return the digest the engine reports."""
    digest = None
    for event in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in event:
            pytest.fail(f"push {repository}:{tag} failed: {event['error']}")
        digest = (event.get("aux") or {}).get("Digest", digest)
    assert digest and digest.startswith("sha256:"), f"no digest reported for {repository}:{tag}"
    return digest


@pytest.mark.stack
def test_registry_build_push_pull_run(docker_client, registry_url, python_base_image, unique_repo):
    repository = f"{registry_url}/{unique_repo}"
    dockerfile = f'FROM {python_base_image}\nRUN python3 -c \'print(1)\' > /x\nCMD ["cat", "/x"]\n'
    assert registry_manifest_digest(registry_url, unique_repo, "smoke") is None

    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repository}:smoke", rm=True, forcerm=True
    )
    try:
        digest = _push(docker_client, repository, "smoke")
        # the registry serves that exact manifest, by digest and by tag, with the schema2/OCI headers
        assert registry_manifest_digest(registry_url, unique_repo, digest) == digest
        assert registry_manifest_digest(registry_url, unique_repo, "smoke") == digest
        request = urllib.request.Request(
            f"http://{registry_url}/v2/{unique_repo}/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        assert f"sha256:{hashlib.sha256(body).hexdigest()}" == digest
        assert json.loads(body)["schemaVersion"] == 2

        # drop the local copy, pull it back by digest, run it
        docker_client.images.remove(image.id, force=True)
        pulled = docker_client.images.pull(repository, tag=digest)
        assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]
        output = docker_client.containers.run(f"{repository}@{digest}", remove=True)
        assert output == b"1\n"

        # the registry allows deletes (tests clean up after themselves)
        delete = urllib.request.Request(
            f"http://{registry_url}/v2/{unique_repo}/manifests/{digest}", method="DELETE"
        )
        with urllib.request.urlopen(delete, timeout=10) as response:
            assert response.status == 202
        assert registry_manifest_digest(registry_url, unique_repo, digest) is None
    finally:
        for ref in (f"{repository}:smoke", image.id):
            with contextlib.suppress(Exception):
                docker_client.images.remove(ref, force=True)


@pytest.mark.stack
def test_python_base_image(docker_client, python_base_image):
    script = "import sys, shutil; print(sys.version_info[:2], shutil.which('python'), sys.prefix)"
    output = docker_client.containers.run(python_base_image, ["python3", "-c", script], remove=True)
    assert output.decode().strip() == "(3, 11) /opt/venv/bin/python /opt/venv"


@pytest.mark.stack
def test_flyte_base_image_runs_a0(docker_client, flyte_base_image):
    help_text = docker_client.containers.run(flyte_base_image, ["a0", "--help"], remove=True).decode()
    assert "Usage: a0" in help_text
    version = docker_client.containers.run(
        flyte_base_image, ["python", "-c", "import flyte; print(flyte.__version__)"], remove=True
    )
    assert version.decode().strip() == "2.12.1"
    workdir = docker_client.containers.run(flyte_base_image, ["pwd"], remove=True)
    assert workdir.decode().strip() == "/root"


@pytest.mark.stack
def test_s3_roundtrip(s3_client, s3_bucket):
    key = f"smoke/{uuid.uuid4().hex}/blob.bin"
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    put = s3_client.put_object(Bucket=s3_bucket, Key=key, Body=payload)
    try:
        etag = put["ETag"]
        assert etag == f'"{hashlib.md5(payload).hexdigest()}"'
        head = s3_client.head_object(Bucket=s3_bucket, Key=key)
        assert head["ContentLength"] == len(payload)
        assert head["ETag"] == etag
        got = s3_client.get_object(Bucket=s3_bucket, Key=key)
        assert got["Body"].read() == payload
        assert got["ETag"] == etag
    finally:
        s3_client.delete_object(Bucket=s3_bucket, Key=key)
    with pytest.raises(s3_client.exceptions.ClientError) as excinfo:
        s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert excinfo.value.response["Error"]["Code"] == "404"


def test_git_repo_factory(make_git_repo):
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    repo = make_git_repo(files={"app.py": "print(1)\n", "pkg/__init__.py": ""}, date=when)
    first = repo.head_sha
    repo.tag("v1.0.0", message="release 1.0.0", date=when)
    repo.tag("light")
    second = repo.commit("second", files={"app.py": "print(2)\n"}, date="2024-02-03T04:05:06+00:00")
    repo.branch("feature", first)

    gitrepo = repo.repo
    assert gitrepo.head.commit.hexsha == second != first
    assert gitrepo.active_branch.name == "main"
    assert gitrepo.tags["v1.0.0"].commit.hexsha == first
    assert gitrepo.tags["v1.0.0"].tag is not None  # annotated
    assert gitrepo.tags["v1.0.0"].tag.message.strip() == "release 1.0.0"
    assert gitrepo.tags["light"].tag is None  # lightweight
    assert gitrepo.heads["feature"].commit.hexsha == first
    assert gitrepo.commit(first).authored_datetime == when
    assert gitrepo.commit(first).committed_datetime == when
    assert gitrepo.commit(second).parents[0].hexsha == first
    assert not gitrepo.is_dirty(untracked_files=True)

    # same content + same dates -> same sha, on any machine (no global git config involved)
    again = make_git_repo(files={"app.py": "print(1)\n", "pkg/__init__.py": ""}, date=when)
    assert again.head_sha == first

    clone = repo.clone()
    assert clone.head_sha == second
    assert clone.repo.remotes.origin.refs["feature"].commit.hexsha == first
    repo.write("dirty.txt", "x")
    assert repo.is_dirty()


@pytest.mark.stack
def test_github_openapi_description(github_openapi_path):
    description = json.loads(github_openapi_path.read_bytes())
    assert description["openapi"].startswith("3.0.")
    assert len(description["paths"]) > 500
    assert "/repos/{owner}/{repo}/pulls/{pull_number}" in description["paths"]


def test_missing_component_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"scripts/stack up"):
        stack_unavailable("registry", "connection refused")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"scripts/stack env"):
        stack_unavailable("registry", "connection refused")

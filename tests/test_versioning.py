"""Versions and image tags (DESIGN.md "Version and tags") on real repositories, and `flyte-deploy version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.errors import UsageError
from deployer.gitctx import read_git_context
from deployer.models import VersionInfo
from deployer.versioning import sanitize_tag, version_info
from tests.fixtures.gitrepo import GitRepo, MakeGitRepo

NO_CI: dict[str, str] = {}


@pytest.fixture
def repo(make_git_repo: MakeGitRepo) -> GitRepo:
    return make_git_repo(files={"app.py": "print(1)\n"}, date="2024-01-02T03:04:05+00:00")


def version_of(path: Path, env: dict[str, str] | None = None, **kwargs: str) -> VersionInfo:
    override = kwargs.pop("override", None)
    return version_info(read_git_context(path, environ=env or NO_CI, **kwargs), override=override)


def test_clean_commit_version_is_the_sha(repo: GitRepo) -> None:
    info = version_of(repo.path)
    assert info.version == repo.head_sha
    assert info.sha == repo.head_sha
    assert info.image_tags == (f"sha-{repo.head_sha[:7]}",)
    assert not info.release and not info.dirty and info.pr is None


def test_same_commit_same_version_on_every_clone(repo: GitRepo) -> None:
    first, second = repo.clone(), repo.clone()
    assert version_of(first.path) == version_of(second.path) == version_of(repo.path)


def test_sha_of_a_release_names_that_commit_whatever_the_work_tree_holds(repo: GitRepo) -> None:
    release = repo.tag("v1.4.0", message="release")
    repo.commit("later", files={"app.py": "print(2)\n"})
    repo.write("app.py", "print('uncommitted')\n")
    (repo.path / "new.py").write_text("x = 1\n")
    info = version_of(repo.path, sha=release)
    assert (info.version, info.sha, info.dirty, info.release) == ("v1.4.0", release, False, True)
    assert info.image_tags == ("1.4.0", "1.4", "1", "latest", f"sha-{release[:7]}")
    assert version_of(repo.path).dirty, "without --sha the work tree is what is deployed"


def test_stable_release_tag(repo: GitRepo) -> None:
    repo.tag("v1.2.3", message="release 1.2.3")
    info = version_of(repo.path)
    assert info.version == "v1.2.3"
    assert info.release
    assert info.image_tags == ("1.2.3", "1.2", "1", "latest", f"sha-{repo.head_sha[:7]}")


def test_zero_major_release_gets_no_major_tag(repo: GitRepo) -> None:
    repo.tag("v0.4.1")
    info = version_of(repo.path)
    assert info.image_tags == ("0.4.1", "0.4", "latest", f"sha-{repo.head_sha[:7]}")
    assert "0" not in info.image_tags


def test_prerelease_gets_only_its_full_version(repo: GitRepo) -> None:
    repo.tag("v2.0.0-rc.1")
    info = version_of(repo.path)
    assert info.version == "v2.0.0-rc.1"
    assert info.release
    assert info.image_tags == ("2.0.0-rc.1", f"sha-{repo.head_sha[:7]}")


def test_build_metadata_is_sanitised(repo: GitRepo) -> None:
    repo.tag("v1.0.0+build.7")
    info = version_of(repo.path)
    assert info.version == "v1.0.0-build.7"
    assert info.image_tags[0] == "1.0.0-build.7"


def test_tag_from_github_ref(repo: GitRepo) -> None:
    info = version_of(repo.path, {"GITHUB_REF": "refs/tags/v5.6.7", "GITHUB_EVENT_NAME": "push"})
    assert info.version == "v5.6.7"
    assert info.image_tags[:4] == ("5.6.7", "5.6", "5", "latest")


def test_highest_semver_tag_wins(repo: GitRepo) -> None:
    repo.tag("v1.9.0")
    repo.tag("v1.10.0")
    assert version_of(repo.path).version == "v1.10.0"


def test_non_semver_tag_is_not_a_release(repo: GitRepo) -> None:
    repo.tag("nightly-build")
    info = version_of(repo.path)
    assert not info.release
    assert info.version == repo.head_sha
    assert info.warnings == ("tag 'nightly-build' is not a semver version (vX.Y.Z): not a release",)


def test_pull_request_tags_and_head_sha(repo: GitRepo, tmp_path: Path) -> None:
    head = repo.head_sha
    repo.commit("merge", files={"app.py": "print('merge')\n"})
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42, "head": {"sha": head, "repo": None}}}))
    info = version_of(repo.path, {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)})
    assert info.sha == head
    assert info.version == head
    assert info.pr == 42
    assert info.image_tags == ("pr-42", f"sha-{head[:7]}")


def test_dirty_tree_version(repo: GitRepo) -> None:
    clean = version_of(repo.path)
    repo.write("app.py", "print('edited')\n")
    dirty = version_of(repo.path)
    assert dirty.dirty
    assert dirty.version != clean.version
    assert dirty.version.startswith(f"{repo.head_sha}-dirty-")
    assert version_of(repo.path) == dirty
    assert dirty.image_tags == (f"sha-{repo.head_sha[:7]}-dirty-{dirty.version.rsplit('-', 1)[1]}",)
    repo.write("app.py", "print('edited again')\n")
    assert version_of(repo.path).version != dirty.version


def test_dirty_tagged_commit_is_not_a_release(repo: GitRepo) -> None:
    repo.tag("v1.0.0")
    repo.write("app.py", "print('uncommitted')\n")
    info = version_of(repo.path)
    assert not info.release
    assert "latest" not in info.image_tags
    assert "uncommitted changes" in info.warnings[0]


def test_directory_outside_git(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("x = 1\n")
    info = version_of(tmp_path)
    assert info.sha is None and not info.release
    assert info.version.startswith("local-") and len(info.version) == len("local-") + 16
    assert info.image_tags == (info.version,)
    assert version_of(tmp_path) == info


def test_override_replaces_the_version_only(repo: GitRepo) -> None:
    repo.tag("v1.0.0")
    info = version_of(repo.path, override="hotfix-1")
    assert info.version == "hotfix-1"
    assert info.release and "1.0.0" in info.image_tags


@pytest.mark.parametrize("bad", ["has space", "-leading", "slash/ed", "x" * 129, ""])
def test_bad_override_is_a_usage_error(repo: GitRepo, bad: str) -> None:
    with pytest.raises(UsageError, match="--version"):
        version_of(repo.path, override=bad)


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("feature/Login Page", "feature-Login-Page"),
        ("..hidden", "hidden"),
        ("-dash", "dash"),
        ("v1.2.3+meta", "v1.2.3-meta"),
        ("a" * 200, "a" * 128),
    ],
)
def test_sanitize_tag(raw: str, tag: str) -> None:
    assert sanitize_tag(raw) == tag


def test_sanitize_tag_refuses_nothing_usable() -> None:
    with pytest.raises(UsageError):
        sanitize_tag("///")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_version_command_json(repo: GitRepo) -> None:
    repo.tag("v0.4.1")
    result = cli("version", "--json", cwd=repo.path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == "v0.4.1"
    assert data["sha"] == repo.head_sha
    assert data["release"] is True and data["dirty"] is False and data["pr"] is None
    assert data["image_tags"] == ["0.4.1", "0.4", "latest", f"sha-{repo.head_sha[:7]}"]


def test_version_command_human(repo: GitRepo) -> None:
    result = cli("version", "--root-dir", str(repo.path), cwd=repo.path.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == repo.head_sha
    assert f"sha-{repo.head_sha[:7]}" in result.stdout


def test_version_command_bad_sha_is_one_line(repo: GitRepo) -> None:
    result = cli("version", "--sha", "nosuchref", cwd=repo.path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: --sha nosuchref: no such commit in {repo.path}"]
    assert result.stdout == ""


def test_the_highest_semver_tag_wins_where_text_order_disagrees(repo: GitRepo) -> None:
    # As text, v0.9.0 sorts first; as versions, v1.0.0 is the release.
    repo.tag("v1.0.0")
    repo.tag("v0.9.0")
    info = version_of(repo.path)
    assert (info.version, info.release) == ("v1.0.0", True)
    assert info.image_tags[:4] == ("1.0.0", "1.0", "1", "latest")


def test_a_semver_tag_on_a_pull_request_head_is_never_a_release(repo: GitRepo, tmp_path: Path) -> None:
    head = repo.head_sha
    repo.tag("v2.0.0")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 5, "head": {"sha": head, "repo": None}}}))
    info = version_of(repo.path, {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)})
    assert (info.version, info.release) == (head, False)
    assert "latest" not in info.image_tags and "2.0.0" not in info.image_tags
    assert info.image_tags == ("pr-5", f"sha-{head[:7]}")


def test_a_push_to_a_branch_of_a_tagged_commit_is_not_a_release(repo: GitRepo) -> None:
    repo.tag("v3.0.0")
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    info = version_of(repo.path, env)
    assert (info.version, info.release) == (repo.head_sha, False)
    assert info.image_tags == (f"sha-{repo.head_sha[:7]}",)
    assert "not a tag push" in info.warnings[0]
    pushed = version_of(repo.path, {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/tags/v3.0.0"})
    assert (pushed.version, pushed.release) == ("v3.0.0", True)

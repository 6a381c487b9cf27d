"""Git context on real repositories: commit, PR head, tags, branch, remote URL, dirty state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.errors import GitError
from deployer.gitctx import public_url, read_git_context
from tests.fixtures.gitrepo import GitRepo, MakeGitRepo

DATE = "2024-05-06T07:08:09+00:00"
NO_CI: dict[str, str] = {}


def write_event(tmp_path: Path, payload: object, name: str = "event.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def pr_payload(head_sha: str, number: int = 17, *, fork: bool = False) -> dict[str, object]:
    return {
        "number": number,
        "pull_request": {
            "number": number,
            "head": {
                "sha": head_sha,
                "ref": "feature/x",
                "repo": {"full_name": "someone/app" if fork else "acme/app"},
            },
            "base": {"sha": "0" * 40, "ref": "main", "repo": {"full_name": "acme/app"}},
        },
        "repository": {"full_name": "acme/app", "default_branch": "trunk"},
    }


@pytest.fixture
def repo(make_git_repo: MakeGitRepo) -> GitRepo:
    return make_git_repo(
        files={"app.py": "print(1)\n", ".gitignore": "*.log\n"}, message="first commit\n\nbody", date=DATE
    )


def test_clean_commit(repo: GitRepo) -> None:
    ctx = read_git_context(repo.path, environ=NO_CI)
    assert ctx.is_repo
    assert ctx.sha == repo.head_sha
    assert ctx.short_sha == repo.head_sha[:7]
    assert (ctx.branch, ctx.ref) == ("main", "refs/heads/main")
    assert not ctx.dirty and ctx.content_hash is None
    assert ctx.commit_time == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert ctx.message == "first commit"
    assert ctx.pr is None and not ctx.fork and ctx.event_name is None
    assert ctx.root == repo.path.resolve()


def test_subdirectory_reads_the_enclosing_repository(repo: GitRepo) -> None:
    repo.commit("nested", files={"src/pkg/mod.py": "x = 1\n"})
    ctx = read_git_context(repo.path / "src" / "pkg", environ=NO_CI)
    assert ctx.sha == repo.head_sha
    assert ctx.root == repo.path.resolve()


def test_sha_flag_reads_another_commit(repo: GitRepo) -> None:
    first = repo.head_sha
    repo.commit("second", files={"app.py": "print(2)\n"})
    ctx = read_git_context(repo.path, sha=first[:10], environ=NO_CI)
    assert ctx.sha == first
    assert ctx.message == "first commit"


def test_unknown_sha_is_an_error(repo: GitRepo) -> None:
    with pytest.raises(GitError, match="--sha deadbeef: no such commit"):
        read_git_context(repo.path, sha="deadbeef", environ=NO_CI)


def test_tags_at_the_commit(repo: GitRepo) -> None:
    repo.tag("v1.0.0", message="release")
    repo.tag("nightly")
    repo.commit("later", files={"app.py": "print(3)\n"})
    repo.tag("v1.1.0")
    assert read_git_context(repo.path, environ=NO_CI).tags == ("v1.1.0",)
    first = repo.rev_parse("v1.0.0^{commit}")
    assert read_git_context(repo.path, sha=first, environ=NO_CI).tags == ("nightly", "v1.0.0")


def test_tag_push_event_names_the_tag_even_when_not_fetched(repo: GitRepo) -> None:
    env = {"GITHUB_REF": "refs/tags/v3.0.0", "GITHUB_EVENT_NAME": "push"}
    ctx = read_git_context(repo.path, environ=env)
    assert ctx.tags == ("v3.0.0",)
    assert ctx.ref == "refs/tags/v3.0.0"
    assert ctx.branch is None


def test_detached_head_has_no_branch(repo: GitRepo) -> None:
    repo.checkout(repo.head_sha, detach=True)
    ctx = read_git_context(repo.path, environ=NO_CI)
    assert ctx.branch is None and ctx.ref is None
    assert ctx.sha == repo.head_sha


def test_modified_tracked_file_makes_the_tree_dirty(repo: GitRepo) -> None:
    repo.write("app.py", "print('changed')\n")
    ctx = read_git_context(repo.path, environ=NO_CI)
    assert ctx.dirty
    assert ctx.sha == repo.head_sha
    assert ctx.content_hash and len(ctx.content_hash) == 64


def test_untracked_file_makes_the_tree_dirty_but_ignored_files_do_not(repo: GitRepo) -> None:
    repo.write("debug.log", "ignored by .gitignore\n")
    repo.write("pkg/__pycache__/mod.cpython-311.pyc", b"\0bytecode")
    repo.write(".flyte-deploy/state.json", "{}")
    assert not read_git_context(repo.path, environ=NO_CI).dirty
    repo.write("new_module.py", "y = 2\n")
    assert read_git_context(repo.path, environ=NO_CI).dirty


def test_dirty_hash_follows_the_changed_content(repo: GitRepo) -> None:
    repo.write("app.py", "print('a')\n")
    first = read_git_context(repo.path, environ=NO_CI).content_hash
    assert read_git_context(repo.path, environ=NO_CI).content_hash == first
    repo.write("app.py", "print('b')\n")
    second = read_git_context(repo.path, environ=NO_CI).content_hash
    assert second != first
    repo.write("app.py", "print('a')\n")
    assert read_git_context(repo.path, environ=NO_CI).content_hash == first


def test_deleted_file_is_a_change(repo: GitRepo) -> None:
    repo.remove("app.py")
    ctx = read_git_context(repo.path, environ=NO_CI)
    assert ctx.dirty and ctx.content_hash


def test_repository_without_commits(make_git_repo: MakeGitRepo) -> None:
    empty = make_git_repo()
    (empty.path / "main.py").write_text("z = 3\n")
    ctx = read_git_context(empty.path, environ=NO_CI)
    assert ctx.is_repo and ctx.sha is None and ctx.commit_time is None
    assert ctx.dirty and ctx.content_hash


def test_directory_outside_git_hashes_its_content(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.py").write_text("a = 1\n")
    ctx = read_git_context(project, environ=NO_CI)
    assert not ctx.is_repo and ctx.sha is None and ctx.branch is None
    first = ctx.content_hash
    assert first and len(first) == 64
    # Bytecode written by importing the code does not change the content.
    (project / "pkg" / "__pycache__").mkdir()
    (project / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert read_git_context(project, environ=NO_CI).content_hash == first
    (project / "pkg" / "mod.py").write_text("a = 2\n")
    assert read_git_context(project, environ=NO_CI).content_hash != first


def test_sha_flag_outside_git_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"--sha abc123: .* is not in a git repository"):
        read_git_context(tmp_path, sha="abc123", environ=NO_CI)


def test_pull_request_event_uses_the_head_commit(repo: GitRepo, tmp_path: Path) -> None:
    head = repo.head_sha
    repo.branch("merge", checkout=True)
    merge = repo.commit("merge commit", files={"app.py": "print('merged')\n"})
    event = write_event(tmp_path, pr_payload(head, 17))
    env = {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REF": "refs/pull/17/merge",
        "GITHUB_HEAD_REF": "feature/x",
    }
    ctx = read_git_context(repo.path, environ=env)
    assert ctx.sha == head != merge
    assert ctx.pr == 17
    assert ctx.event_name == "pull_request"
    assert ctx.branch == "feature/x"
    assert ctx.ref == "refs/pull/17/merge"
    assert ctx.default_branch == "trunk"
    assert not ctx.fork
    assert ctx.message == "first commit"


def test_pull_request_from_a_fork(repo: GitRepo, tmp_path: Path) -> None:
    event = write_event(tmp_path, pr_payload(repo.head_sha, 5, fork=True))
    env = {"GITHUB_EVENT_NAME": "pull_request_target", "GITHUB_EVENT_PATH": str(event)}
    ctx = read_git_context(repo.path, environ=env)
    assert ctx.fork and ctx.pr == 5


def test_pull_request_head_missing_from_a_shallow_checkout(repo: GitRepo, tmp_path: Path) -> None:
    unknown = "1" * 40
    event = write_event(tmp_path, pr_payload(unknown, 9))
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    ctx = read_git_context(repo.path, environ=env)
    assert ctx.sha == unknown and ctx.short_sha == "1111111"
    assert ctx.commit_time is None and ctx.message is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"pull_request": {"number": 3, "head": {}}}), "needs pull_request.head.sha"),
        (
            json.dumps({"pull_request": {"number": "3", "head": {"sha": "a" * 40}}}),
            "positive pull_request.number",
        ),
    ],
)
def test_malformed_event_payload_names_the_file(
    repo: GitRepo, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad-event.json"
    path.write_text(content)
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(path)}
    with pytest.raises(GitError, match=message) as caught:
        read_git_context(repo.path, environ=env)
    assert str(path) in str(caught.value)
    assert caught.value.file == str(path)


def test_missing_event_file_is_an_error(repo: GitRepo, tmp_path: Path) -> None:
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(tmp_path / "nope.json")}
    with pytest.raises(GitError, match=r"nope\.json: no such file"):
        read_git_context(repo.path, environ=env)


def test_repository_url_from_github_environment(repo: GitRepo) -> None:
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/app"}
    assert read_git_context(repo.path, environ=env).repo_url == "https://github.com/acme/app"


def test_repository_url_from_origin_without_credentials(repo: GitRepo) -> None:
    repo.add_remote("origin", "https://x-access-token:s3cret@github.com/acme/app.git")
    url = read_git_context(repo.path, environ=NO_CI).repo_url
    assert url == "https://github.com/acme/app"
    assert "s3cret" not in url


@pytest.mark.parametrize(
    ("remote", "public"),
    [
        ("git@github.com:acme/app.git", "https://github.com/acme/app"),
        ("ssh://git@github.com/acme/app.git", "https://github.com/acme/app"),
        ("https://user:pw@gitlab.example:8443/g/app.git", "https://gitlab.example:8443/g/app"),
        ("/srv/git/app.git", "/srv/git/app.git"),
    ],
)
def test_public_url(remote: str, public: str) -> None:
    assert public_url(remote) == public


def test_default_branch_from_a_clone(repo: GitRepo) -> None:
    clone = repo.clone()
    assert read_git_context(clone.path, environ=NO_CI).default_branch == "main"
    assert read_git_context(clone.path, environ=NO_CI).repo_url == str(repo.path)

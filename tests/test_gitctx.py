"""Git context on real repositories: commit, PR head, tags, branch, remote URL, dirty state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.errors import GitError
from deployer.gitctx import commit_tree, public_url, read_git_context
from tests.fixtures.gitrepo import GitRepo, MakeGitRepo, run_git

DATE = "2024-05-06T07:08:09+00:00"
NO_CI: dict[str, str] = {}
# A submodule's clone has no local identity of its own.
IDENTITY = ("-c", "user.name=Flyte Deploy Tests", "-c", "user.email=tests@flyte-deploy.invalid")


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


@pytest.mark.parametrize("rev", ["main@{9999}", "--output=/tmp/x", "HEAD~5", "nope^{tree}", ""])
def test_sha_is_read_as_git_reads_a_revision_never_as_an_option(repo: GitRepo, rev: str) -> None:
    with pytest.raises(GitError, match=r"--sha .*: no such commit"):
        read_git_context(repo.path, sha=rev or "''", environ=NO_CI)
    repo.commit("second", files={"app.py": "print(2)\n"})
    first = repo.rev_parse("HEAD~1")
    for spelled in ("HEAD~1", "main@{1}", ":/first commit", f"{first[:8]}^{{commit}}"):
        assert read_git_context(repo.path, sha=spelled, environ=NO_CI).sha == first


def test_a_sha_other_than_a_clean_head_is_read_from_the_commit(repo: GitRepo) -> None:
    first = repo.head_sha
    repo.commit("second", files={"app.py": "print(2)\n"})
    repo.write("app.py", "print('uncommitted')\n")
    older = read_git_context(repo.path, sha=first, environ=NO_CI)
    assert (older.sha, older.from_commit, older.dirty, older.content_hash) == (first, True, False, None)
    head = read_git_context(repo.path, sha="HEAD", environ=NO_CI)
    # A dirty HEAD: the commit's code is deployed, not the work tree's.
    assert (head.from_commit, head.dirty) == (True, False)
    repo.git("checkout", "--", "app.py")
    clean = read_git_context(repo.path, sha="HEAD", environ=NO_CI)
    assert (clean.from_commit, clean.dirty) == (False, False)
    assert not read_git_context(repo.path, environ=NO_CI).from_commit


def _tree(top: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `top` but `.git`: kind (file, exec, link, dir) and content or target."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).as_posix()
        if rel == ".git" or rel.startswith(".git/") or "/.git" in rel:
            continue
        if path.is_symlink():
            found[rel] = ("link", str(path.readlink()))
        elif path.is_dir():
            found[rel] = ("dir", "")
        else:
            found[rel] = ("exec" if path.stat().st_mode & 0o111 else "file", path.read_text())
    return found


def _repo_state(repo: GitRepo) -> tuple[str, str, bytes]:
    return (
        repo.git("for-each-ref"),
        repo.git("status", "--porcelain", "--ignored"),
        (repo.path / ".git" / "index").read_bytes(),
    )


def test_commit_tree_checks_the_commit_out_as_a_checkout_would_and_touches_nothing(
    make_git_repo: MakeGitRepo,
) -> None:
    repo = make_git_repo(files={"svc/app.py": "VALUE = 1\n", "svc/run.sh": "#!/bin/sh\n", "top.txt": "t\n"})
    repo.path.joinpath("svc", "run.sh").chmod(0o755)
    repo.path.joinpath("svc", "alias.py").symlink_to("app.py")
    repo.write(".gitattributes", "*.txt text eol=crlf\n")
    first = repo.commit("first")
    checkout = repo.clone()
    checkout.git("checkout", "--quiet", first)
    repo.commit("second", files={"svc/app.py": "VALUE = 2\n", "svc/new.py": "", "svc/run.sh": None})
    repo.write("svc/app.py", "VALUE = 3\n")
    before = _repo_state(repo)

    ctx = read_git_context(repo.path / "svc", sha=first, environ=NO_CI)
    with commit_tree(ctx, repo.path / "svc") as tree:
        assert tree.root_dir == tree.top / "svc" and tree.top.name == repo.path.name
        assert _tree(tree.top) == _tree(checkout.path)
        assert (tree.top / "top.txt").read_bytes() == b"t\r\n", "attributes apply as in a checkout"
        assert tree.locate(repo.path / "svc" / "app.py") == tree.root_dir / "app.py"
        assert tree.locate(Path("/elsewhere/x.py")) == Path("/elsewhere/x.py")
        # A repository at the commit, clean: ignore files above root_dir apply as in any checkout.
        assert run_git(tree.top, "rev-parse", "HEAD") == first
        assert run_git(tree.top, "status", "--porcelain") == ""
        top = tree.top
    assert not top.parent.exists(), "removed on exit"
    assert _repo_state(repo) == before, "the repository and its work tree are untouched"

    head = read_git_context(repo.path, environ=NO_CI)
    with commit_tree(head, repo.path) as tree:
        assert (tree.top, tree.root_dir) == (repo.path, repo.path), "no --sha: the work tree itself"


def test_commit_tree_checks_submodules_out_at_their_recorded_commits(make_git_repo: MakeGitRepo) -> None:
    lib = make_git_repo("lib", files={"helper.py": "WHO = 1\n"})
    recorded = lib.head_sha
    lib.commit("two", files={"helper.py": "WHO = 2\n"})
    repo = make_git_repo("app", files={"app.py": ""})
    run_git(
        repo.path, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", str(lib.path), "lib"
    )
    run_git(repo.path / "lib", "checkout", "--quiet", recorded)
    first = repo.commit("with lib at 1")
    run_git(repo.path / "lib", "checkout", "--quiet", "main")
    repo.commit("lib at 2")

    with commit_tree(read_git_context(repo.path, sha=first, environ=NO_CI), repo.path) as tree:
        assert (tree.top / "lib" / "helper.py").read_text() == "WHO = 1\n"
        assert run_git(tree.top / "lib", "rev-parse", "HEAD") == recorded

    # A recorded commit the local clone of the submodule does not have: one error naming both.
    run_git(repo.path / "lib", "checkout", "--quiet", "--detach")
    run_git(repo.path / "lib", *IDENTITY, "commit", "--quiet", "--allow-empty", "-m", "local only")
    missing = repo.commit("lib at a local commit")
    run_git(repo.path / "lib", "checkout", "--quiet", "main")
    run_git(repo.path / "lib", "reflog", "expire", "--expire=now", "--all")
    run_git(repo.path / "lib", "gc", "--quiet", "--prune=now")
    ctx = read_git_context(repo.path, sha=missing, environ=NO_CI)
    refused = pytest.raises(GitError, match=r"--sha \w+: submodule lib at \w+ is not in the local repository")
    with refused, commit_tree(ctx, repo.path):
        pass


def test_submodule_state_is_part_of_the_dirty_check(make_git_repo: MakeGitRepo) -> None:
    lib = make_git_repo("lib", files={"helper.py": "WHO = 1\n"})
    repo = make_git_repo("app", files={"app.py": ""})
    run_git(
        repo.path, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", str(lib.path), "lib"
    )
    repo.commit("with lib")

    def state() -> tuple[bool, str | None]:
        ctx = read_git_context(repo.path, environ=NO_CI)
        return ctx.dirty, ctx.content_hash

    assert state() == (False, None)
    (repo.path / "lib" / "helper.py").write_text("WHO = 2\n")
    edited = state()
    (repo.path / "lib" / "helper.py").write_text("WHO = 3\n")
    edited_again = state()
    assert edited[0] and edited_again[0] and edited[1] != edited_again[1]
    run_git(repo.path / "lib", "checkout", "--quiet", "--", "helper.py")
    run_git(repo.path / "lib", *IDENTITY, "commit", "--quiet", "--allow-empty", "-m", "moved")
    moved = state()
    assert moved[0] and moved[1] not in (edited[1], edited_again[1])


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


def test_dirty_hash_of_undecodable_names_and_large_files(repo: GitRepo) -> None:
    import os

    (repo.path / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name\n")
    with open(repo.path / "big.bin", "wb") as big:
        big.truncate(64 << 20)
    first = read_git_context(repo.path, environ=NO_CI)
    assert first.dirty and first.content_hash == read_git_context(repo.path, environ=NO_CI).content_hash


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

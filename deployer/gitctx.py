"""Git context: which commit is being deployed, and what CI says about it.

Everything here is read-only. The working tree is compared with HEAD (that is the code discovery
imports); the commit the version is derived from may differ on a pull request, where GitHub checks out
a merge commit but the version must follow the PR's head commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import git

from deployer.bundle.ignore import IgnoreRules
from deployer.errors import GitError
from deployer.models import GitInfo, Model

PR_EVENTS = frozenset({"pull_request", "pull_request_target"})

# Paths the deployer itself (or importing user code) creates: they must never make a tree "dirty",
# or the second run over the same commit would get a new version.
_GENERATED_DIRS = frozenset({"__pycache__", ".flyte-deploy"})
_GENERATED_SUFFIXES = (".pyc", ".pyo")
_SHA_RE = re.compile(r"[0-9a-f]{40}")


class GitContext(Model):
    """The repository at the commit being deployed."""

    root: Path
    """Top of the git work tree, or the directory itself when it is not in a repository."""
    is_repo: bool
    sha: str | None = None
    """Full commit SHA: `--sha`, else the PR head on a pull_request event, else HEAD."""
    short_sha: str | None = None
    ref: str | None = None
    """`GITHUB_REF` when set, else `refs/heads/<branch>` of the checkout."""
    branch: str | None = None
    tags: tuple[str, ...] = ()
    """Tags pointing at `sha` (plus the pushed tag of a tag event), sorted."""
    default_branch: str | None = None
    repo_url: str | None = None
    """`GITHUB_SERVER_URL/GITHUB_REPOSITORY`, else the `origin` remote without credentials."""
    commit_time: datetime | None = None
    dirty: bool = False
    """The working tree differs from HEAD (changed or untracked, not ignored, files)."""
    content_hash: str | None = None
    """sha256 of the changed files (dirty tree) or of every file (no repository); else None."""
    event_name: str | None = None
    pr: int | None = None
    fork: bool = False
    """The PR's head repository is not the base repository (read-only token, no secrets)."""
    message: str | None = None
    """Subject line of the commit."""

    def info(self) -> GitInfo:
        return GitInfo(sha=self.sha, ref=self.ref, pr=self.pr, dirty=self.dirty)


def read_git_context(
    root: Path, *, sha: str | None = None, environ: Mapping[str, str] | None = None
) -> GitContext:
    """Read the commit, PR, tags and dirty state for the project at `root`."""
    env = os.environ if environ is None else environ
    root = Path(root).resolve()
    if not root.is_dir():
        raise GitError(f"{root}: not a directory")
    event_name = env.get("GITHUB_EVENT_NAME") or None
    payload = _read_event(env)
    repo = _open_repo(root)
    if repo is None:
        if sha:
            raise GitError(f"--sha {sha}: {root} is not in a git repository")
        return GitContext(
            root=root,
            is_repo=False,
            event_name=event_name,
            repo_url=_github_url(env),
            content_hash=tree_content_hash(root),
        )
    with repo:
        return _repo_context(repo, sha=sha, env=env, event_name=event_name, payload=payload)


def _repo_context(
    repo: git.Repo,
    *,
    sha: str | None,
    env: Mapping[str, str],
    event_name: str | None,
    payload: dict[str, Any],
) -> GitContext:
    top = Path(repo.working_tree_dir or ".").resolve()
    pull = payload.get("pull_request") if event_name in PR_EVENTS else None
    pr_number, pr_head, fork = _pull_request(pull, env)
    head = _head_commit(repo)

    commit: git.Commit | None
    if sha:
        commit = _resolve(repo, sha)
        full_sha: str | None = commit.hexsha
    elif pr_head:
        full_sha = pr_head
        commit = _lookup(repo, pr_head)
    else:
        commit = head
        full_sha = head.hexsha if head else None

    changed = changed_files(repo) if head else untracked_files(repo)
    dirty = bool(changed)
    ref = env.get("GITHUB_REF") or _local_ref(repo)
    return GitContext(
        root=top,
        is_repo=True,
        sha=full_sha,
        short_sha=full_sha[:7] if full_sha else None,
        ref=ref,
        branch=_branch(repo, env, pull),
        tags=_tags(repo, full_sha if commit else None, env),
        default_branch=_default_branch(repo, payload),
        repo_url=_github_url(env) or _origin_url(repo),
        commit_time=commit.committed_datetime if commit else None,
        dirty=dirty,
        content_hash=_files_hash(top, changed) if dirty else None,
        event_name=event_name,
        pr=pr_number,
        fork=fork,
        message=commit.summary if commit and isinstance(commit.summary, str) else None,
    )


def _open_repo(root: Path) -> git.Repo | None:
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repo.bare:
        repo.close()
        return None
    return repo


def _head_commit(repo: git.Repo) -> git.Commit | None:
    try:
        return repo.head.commit
    except ValueError:  # a repository with no commits yet
        return None


def _load(repo: git.Repo, rev: str) -> git.Commit:
    commit = repo.commit(rev)
    # gitpython takes a full hex SHA on trust; reading the commit is what finds out it is missing.
    commit.committed_date  # noqa: B018
    return commit


def _resolve(repo: git.Repo, rev: str) -> git.Commit:
    try:
        return _load(repo, rev)
    except (git.BadName, git.BadObject, ValueError) as exc:
        raise GitError(f"--sha {rev}: no such commit in {repo.working_tree_dir}") from exc


def _lookup(repo: git.Repo, sha: str) -> git.Commit | None:
    """The PR head may be absent from a shallow merge-commit checkout: that is fine."""
    try:
        return _load(repo, sha)
    except (git.BadName, git.BadObject, ValueError):
        return None


def _read_event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GitError(f"GITHUB_EVENT_PATH {path}: no such file", file=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GitError(f"GITHUB_EVENT_PATH {path}: cannot read: {exc}", file=path) from exc
    except json.JSONDecodeError as exc:
        raise GitError(
            f"GITHUB_EVENT_PATH {path}: not valid JSON (line {exc.lineno}: {exc.msg})",
            file=path,
            line=exc.lineno,
        ) from exc
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise GitError(f"GITHUB_EVENT_PATH {path}: expected a JSON object, got {kind}", file=path)
    event = env.get("GITHUB_EVENT_NAME")
    if event in PR_EVENTS:
        _check_pull_request(data, path, event)
    return data


def _check_pull_request(data: dict[str, Any], path: str, event: str) -> None:
    pull = data.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    head_sha = head.get("sha") if isinstance(head, dict) else None
    if not isinstance(head_sha, str) or not _SHA_RE.fullmatch(head_sha):
        raise GitError(
            f"GITHUB_EVENT_PATH {path}: a {event} event needs pull_request.head.sha (40 hex), "
            f"got {head_sha!r}",
            file=path,
        )
    number = pull.get("number", data.get("number")) if isinstance(pull, dict) else None
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
        raise GitError(
            f"GITHUB_EVENT_PATH {path}: a {event} event needs a positive pull_request.number, got {number!r}",
            file=path,
        )


def _pull_request(pull: Any, env: Mapping[str, str]) -> tuple[int | None, str | None, bool]:
    if not isinstance(pull, dict):
        match = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", env.get("GITHUB_REF", ""))
        return (int(match.group(1)) if match else None), None, False
    head_repo = _dig(pull, "head", "repo", "full_name")
    base_repo = _dig(pull, "base", "repo", "full_name")
    # A deleted fork shows up as head.repo = null: still not the base repository.
    fork = base_repo is not None and head_repo != base_repo
    return int(pull["number"]), str(pull["head"]["sha"]), fork


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _local_ref(repo: git.Repo) -> str | None:
    if repo.head.is_detached:
        return None
    return f"refs/heads/{repo.active_branch.name}"


def _branch(repo: git.Repo, env: Mapping[str, str], pull: Any) -> str | None:
    head_ref = env.get("GITHUB_HEAD_REF") or _dig(pull, "head", "ref")
    if head_ref:
        return str(head_ref)
    ref = env.get("GITHUB_REF", "")
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    if ref:
        return None
    local = _local_ref(repo)
    return local.removeprefix("refs/heads/") if local else None


def _tags(repo: git.Repo, sha: str | None, env: Mapping[str, str]) -> tuple[str, ...]:
    found: set[str] = set()
    if sha:
        found.update(line.strip() for line in repo.git.tag("--points-at", sha).splitlines() if line.strip())
    ref = env.get("GITHUB_REF", "")
    if ref.startswith("refs/tags/"):
        # A tag push checks the tag out without fetching tags: the event is the authority.
        found.add(ref.removeprefix("refs/tags/"))
    return tuple(sorted(found))


def _default_branch(repo: git.Repo, payload: dict[str, Any]) -> str | None:
    from_event = _dig(payload, "repository", "default_branch")
    if isinstance(from_event, str) and from_event:
        return from_event
    try:
        target = repo.git.symbolic_ref("--quiet", "refs/remotes/origin/HEAD")
    except git.GitCommandError:
        return None
    return target.removeprefix("refs/remotes/origin/") or None


def _github_url(env: Mapping[str, str]) -> str | None:
    server, repository = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    if server and repository:
        return f"{server.rstrip('/')}/{repository}"
    return None


def _origin_url(repo: git.Repo) -> str | None:
    try:
        url = repo.remote("origin").url
    except ValueError:
        return None
    return public_url(url)


def public_url(url: str) -> str:
    """A remote URL fit to print: credentials removed, ssh forms turned into https links."""
    scp = re.fullmatch(r"(?:[^@/]+@)?([^:/]+):(?!//)(.+)", url)
    if scp and "://" not in url:
        return f"https://{scp.group(1)}/{scp.group(2).removesuffix('.git')}"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git"):
        host = parts.hostname or ""
        if parts.port and parts.scheme in ("http", "https"):
            host = f"{host}:{parts.port}"
        scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
        return urlunsplit((scheme, host, parts.path.removesuffix(".git"), "", ""))
    return url


def _is_generated(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in _GENERATED_DIRS for p in parts[:-1]) or rel.endswith(_GENERATED_SUFFIXES)


def changed_files(repo: git.Repo) -> list[str]:
    """Work-tree paths (POSIX, relative to the top) that differ from HEAD, untracked included."""
    out = repo.git.status(
        "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=all"
    )
    paths = {entry[3:] for entry in out.split("\0") if len(entry) > 3}
    return sorted(p for p in paths if not _is_generated(p))


def untracked_files(repo: git.Repo) -> list[str]:
    """Before the first commit every non-ignored file is new."""
    out = repo.git.ls_files("--others", "--cached", "--exclude-standard", "-z")
    return sorted(p for p in out.split("\0") if p and not _is_generated(p))


def _files_hash(top: Path, rel_paths: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(rel_paths):
        path = top / rel
        digest.update(rel.encode("utf-8") + b"\0")
        if path.is_symlink():
            digest.update(b"link\0" + os.readlink(path).encode("utf-8"))
        elif path.is_file():
            executable = os.access(path, os.X_OK)
            digest.update(b"x\0" if executable else b"f\0")
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError as exc:
                raise GitError(f"cannot read {rel}: {exc.strerror}", file=str(path)) from exc
        else:
            digest.update(b"deleted\0")
        digest.update(b"\n")
    return digest.hexdigest()


def tree_content_hash(root: Path) -> str:
    """Hash of every source file under a directory that is not a git repository: the files a bundle
    of style `all` would hold (standard ignores, `.gitignore`, `.flyteignore`)."""
    rules = IgnoreRules(root, standard=True, gitignore=True)
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirnames[:] = [d for d in dirnames if not rules.ignored(f"{prefix}{d}", is_dir=True)]
        files.extend(f"{prefix}{n}" for n in filenames if not rules.ignored(f"{prefix}{n}", is_dir=False))
    return _files_hash(root, files)

"""Git context: which commit is being deployed, and what CI says about it.

Everything here is read-only. The working tree is compared with HEAD (that is the code discovery
imports); the commit the version is derived from may differ on a pull request, where GitHub checks out
a merge commit but the version must follow the PR's head commit.

`--sha X` deploys X's code: unless X is HEAD and the working tree is clean, `commit_tree` materializes
X's tree (submodules at their recorded commits) from the local repository's objects into a temporary
directory, and discovery, the bundle and the images read that, never the working tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    """The code deployed differs from `sha`: changed or untracked (not ignored) files in the working
    tree or in a submodule, or a submodule checked out at another commit than the one recorded."""
    content_hash: str | None = None
    """sha256 of the changed files (dirty tree) or of every file (no repository); else None."""
    from_commit: bool = False
    """The code is read from `sha`'s objects (`commit_tree`), not from the working tree: `--sha` names
    a commit other than HEAD, or the working tree has changes that commit does not hold."""
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

    at_head = head is not None and commit is not None and commit.hexsha == head.hexsha
    # An explicit --sha other than HEAD never looks at the working tree: its code comes from the commit.
    changed = (changed_files(repo) if head else untracked_files(repo)) if not sha or at_head else []
    from_commit = bool(sha) and (not at_head or bool(changed))
    if from_commit:
        changed = []
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
        from_commit=from_commit,
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
    """`--sha` as git itself reads a revision (`main@{2}`, `v1^`, `:/subject`), never as an option."""
    try:
        found = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", rev).strip()
        return _load(repo, found)  # peels an annotated tag to its commit; a tree or blob is refused
    except (git.GitCommandError, git.BadName, git.BadObject, ValueError) as exc:
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
    """Work-tree paths (POSIX, relative to the top) that differ from HEAD, untracked included.

    Submodules count as code: a submodule checked out at another commit than the one recorded is
    listed by its path (its hash names that commit), and its own changed files are listed under it."""
    out = repo.git.status(
        "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=none"
    )
    top = Path(repo.working_tree_dir or ".")
    paths: set[str] = set()
    entries = iter(out.split("\0"))
    for entry in entries:
        kind = entry[:1]
        if kind in ("?", "!"):
            if kind == "?":
                paths.add(entry[2:])
            continue
        fields = entry.split(" ", {"1": 8, "2": 9, "u": 10}.get(kind, 0))
        if len(fields) < 2:
            continue
        path = fields[-1]
        if kind == "2":
            next(entries, None)  # the original path of a rename (off with --no-renames, but harmless)
        submodule = fields[2]
        if not submodule.startswith("S"):
            paths.add(path)
            continue
        if submodule[1] == "C":
            paths.add(path)
        if "M" in submodule[2:] or "U" in submodule[2:]:
            paths.update(f"{path}/{rel}" for rel in _submodule_changes(top / path))
    return sorted(p for p in paths if not _is_generated(p))


def _submodule_changes(path: Path) -> list[str]:
    try:
        sub = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return []
    with sub:
        return changed_files(sub) if _head_commit(sub) else untracked_files(sub)


def untracked_files(repo: git.Repo) -> list[str]:
    """Before the first commit every non-ignored file is new."""
    out = repo.git.ls_files("--others", "--cached", "--exclude-standard", "-z")
    return sorted(p for p in out.split("\0") if p and not _is_generated(p))


def _name_bytes(rel: str) -> bytes:
    # Names come from git and os.scandir with undecodable bytes as surrogates: hash the real bytes.
    return rel.encode("utf-8", "surrogateescape")


def _files_hash(top: Path, rel_paths: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(rel_paths):
        path = top / rel
        digest.update(_name_bytes(rel) + b"\0")
        if path.is_symlink():
            digest.update(b"link\0" + os.fsencode(os.readlink(path)))
        elif path.is_file():
            executable = os.access(path, os.X_OK)
            digest.update(b"x\0" if executable else b"f\0")
            digest.update(_file_sha256(path, rel))
        elif path.is_dir() and (path / ".git").exists():
            digest.update(b"commit\0" + _submodule_head(path).encode())
        else:
            digest.update(b"deleted\0")
        digest.update(b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path, rel: str) -> bytes:
    """Streamed: a dirty tree may hold files far larger than memory."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError as exc:
        raise GitError(f"cannot read {rel}: {exc.strerror}", file=str(path)) from exc


def _submodule_head(path: Path) -> str:
    try:
        with git.Repo(path) as sub:
            head = _head_commit(sub)
            return head.hexsha if head else ""
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return ""


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


# ---------------------------------------------------------------------------------------- commit trees

TREE_PREFIX = "flyte-deploy-commit-"


@dataclass(frozen=True)
class CodeTree:
    """Where the code of a deploy is read from: the working tree, or a commit's tree on disk."""

    top: Path
    """Top of the tree (the repository's top for the working tree)."""
    root_dir: Path
    """root_dir inside it."""
    source_top: Path
    """Top of the working tree the request's paths name."""
    sha: str = ""
    """The commit the tree holds (empty for the working tree)."""

    def locate(self, path: Path | None) -> Path | None:
        """`path` (in the working tree) at the same place in this tree; paths outside stay as they are.
        A path the commit does not hold is an error naming it."""
        if path is None or self.top == self.source_top:
            return path
        absolute = Path(os.path.abspath(path))
        for base in (self.source_top, Path(os.path.realpath(self.source_top))):
            if absolute.is_relative_to(base):
                located = self.top / absolute.relative_to(base)
                if not os.path.lexists(located):
                    raise GitError(f"{path}: no such file or directory at commit {self.sha[:7]}")
                return located
        return path


@contextlib.contextmanager
def commit_tree(ctx: GitContext, root_dir: Path, *, scratch: Path | None = None) -> Iterator[CodeTree]:
    """The tree the code is read from. The working tree, unless `ctx.from_commit`: then the commit's
    tree, with its submodules at their recorded commits, checked out (through git, so attributes and
    filters apply as in a checkout) into a temporary directory under `scratch` (default: the system's
    temporary directory) that is removed on exit. Nothing is written to the repository.

    Relative paths are those of a checkout of the commit, so bundles and versions are too."""
    root_dir = Path(root_dir).resolve()
    if not ctx.from_commit:
        yield CodeTree(top=ctx.root, root_dir=root_dir, source_top=ctx.root)
        return
    assert ctx.sha is not None
    from deployer.scratch import held_dir

    inside = root_dir.relative_to(ctx.root)  # read_git_context found ctx.root above root_dir
    with git.Repo(ctx.root) as repo:
        git_dir = Path(repo.git_dir).resolve()
    with held_dir(Path(scratch or tempfile.gettempdir()), TREE_PREFIX) as tmp:
        # The top keeps its folder name, as a checkout of the same repository would have it.
        top = tmp / ctx.root.name
        where = f"--sha {ctx.short_sha}"
        try:
            _checkout(git_dir, ctx.sha, top, worktree=ctx.root, where=where)
        except OSError as exc:
            raise GitError(f"{where}: cannot check the commit out into {tmp}: {exc.strerror}") from exc
        except GitError as exc:
            if exc.message.startswith(where):
                raise
            raise GitError(f"{where}: cannot check the commit out: {exc}") from exc
        if not (top / inside).is_dir():
            raise GitError(f"--root-dir {inside.as_posix()}: not a directory at commit {ctx.short_sha}")
        yield CodeTree(top=top, root_dir=top / inside, source_top=ctx.root, sha=ctx.sha)


def _git(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    done = subprocess.run(
        ["git", *args],
        env={**base, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        capture_output=True,
        text=True,
        errors="surrogateescape",
        check=False,
    )
    if check and done.returncode != 0:
        command = next((a for a in args if a in _SUBCOMMANDS), "git")
        detail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise GitError(f"git {command} failed: {detail}")
    return done


_SUBCOMMANDS = frozenset(
    {"init", "rev-parse", "read-tree", "checkout-index", "update-ref", "ls-tree", "config"}
)
# A hook or a parent git may have set these: they would point our commands at another repository.
_GIT_LOCATION_VARS = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_PREFIX"}
)


def _checkout(git_dir: Path, sha: str, dest: Path, *, worktree: Path | None, where: str) -> None:
    """Check `sha` of the repository at `git_dir` out into `dest`, which becomes a repository of its
    own (HEAD detached at `sha`, objects borrowed through alternates) so ignore files above root_dir
    apply as in a checkout. The source's config (filters, eol) applies; its index and refs are untouched."""
    dest.mkdir(parents=True)
    _git("init", "--quiet", "--template=", str(dest))
    objects = Path(_git("--git-dir", str(git_dir), "rev-parse", "--git-path", "objects").stdout.strip())
    alternates = dest / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(f"{(git_dir / objects) if not objects.is_absolute() else objects}\n")
    index = {"GIT_INDEX_FILE": str(dest / ".git" / "index")}
    source = ("--git-dir", str(git_dir), "--work-tree", str(dest), "-c", "core.hooksPath=/dev/null")
    _git(*source, "read-tree", sha, env=index)
    _git(*source, "checkout-index", "--all", "--force", env=index)
    _git("-C", str(dest), "update-ref", "--no-deref", "HEAD", sha)
    names = _submodule_names(git_dir, sha)
    for path, commit in _gitlinks(git_dir, sha):
        target = dest / path
        target.mkdir(parents=True, exist_ok=True)
        sub_dir = _submodule_git_dir(git_dir, names.get(path), worktree / path if worktree else None)
        if sub_dir is None:
            continue  # never initialized here: a checkout leaves its directory empty too
        if _git("--git-dir", str(sub_dir), "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode:
            raise GitError(
                f"{where}: submodule {path} at {commit[:12]} is not in the local repository ({sub_dir}): "
                "fetch it (git submodule update --init) or deploy another commit"
            )
        target.rmdir()
        _checkout(sub_dir, commit, target, worktree=worktree / path if worktree else None, where=where)


def _gitlinks(git_dir: Path, sha: str) -> list[tuple[str, str]]:
    out = _git("--git-dir", str(git_dir), "ls-tree", "-r", "-z", "--full-tree", sha).stdout
    links = []
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == "commit":
            links.append((path, fields[2]))
    return links


def _submodule_names(git_dir: Path, sha: str) -> dict[str, str]:
    """Path → name, from the commit's `.gitmodules` (empty without one)."""
    done = _git(
        "--git-dir",
        str(git_dir),
        "config",
        "--blob",
        f"{sha}:.gitmodules",
        "--null",
        "--get-regexp",
        r"^submodule\..*\.path$",
        check=False,
    )
    names: dict[str, str] = {}
    for entry in done.stdout.split("\0") if done.returncode == 0 else ():
        key, _, path = entry.partition("\n")
        if key and path:
            names[path] = key.removeprefix("submodule.").removesuffix(".path")
    return names


def _submodule_git_dir(git_dir: Path, name: str | None, worktree: Path | None) -> Path | None:
    """Where a submodule's objects are: `modules/<name>` in its parent's git dir (or the common one),
    else the git dir of its checkout."""
    candidates: list[Path] = []
    if name:
        common = _git("--git-dir", str(git_dir), "rev-parse", "--git-common-dir").stdout.strip()
        candidates += [git_dir / "modules" / name, (git_dir / common).resolve() / "modules" / name]
    for candidate in candidates:
        if (candidate / "HEAD").is_file():
            return candidate
    if worktree is not None and (worktree / ".git").exists():
        done = _git("-C", str(worktree), "rev-parse", "--absolute-git-dir", check=False)
        if done.returncode == 0:
            return Path(done.stdout.strip())
    return None

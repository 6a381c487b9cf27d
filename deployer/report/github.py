"""GitHub side effects of a deploy: the sticky PR comment and Deployments with their statuses.

GitHub is reporting, not deploying: every call here is bounded (a few retries with backoff on 5xx,
429 and network errors) and a failure ends as a warning through `warn`, never as an exception that
would fail a deploy that worked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException
from github.Deployment import Deployment
from github.Repository import Repository

T = TypeVar("T")

DEFAULT_API_URL = "https://api.github.com"
# GitHub rejects longer deployment status descriptions.
STATUS_DESCRIPTION_LIMIT = 140
# How many of an environment's most recent deployments to look at when deactivating old ones.
DEACTIVATE_SCAN_LIMIT = 30


@dataclass(frozen=True)
class GitHubSettings:
    repository: str
    """`owner/name` (`GITHUB_REPOSITORY`)."""
    token: str
    api_url: str = DEFAULT_API_URL
    """`GITHUB_API_URL`: GitHub Enterprise Server, or a local API in tests."""
    retries: int = 3
    """Extra attempts after a 5xx, 429 or network error."""
    backoff_seconds: float = 1.0
    """First wait between attempts; doubles each time."""
    timeout_seconds: int = 20
    seconds_between_requests: float | None = 0.25
    """PyGithub's client-side throttling (its defaults); tests set both to 0."""
    seconds_between_writes: float | None = 1.0


@dataclass(frozen=True)
class CommentRef:
    id: int
    url: str
    created: bool


class GitHubReporter:
    """Sticky comments and Deployments for one repository; every failure becomes a warning."""

    def __init__(self, settings: GitHubSettings, warn: Callable[[str], None]) -> None:
        self.settings = settings
        self._warn = warn
        self._client = Github(
            base_url=settings.api_url.rstrip("/"),
            auth=Auth.Token(settings.token),
            timeout=settings.timeout_seconds,
            # Our own bounded loop below decides about retries, so a run never hangs on GitHub.
            retry=None,
            per_page=100,
            seconds_between_requests=settings.seconds_between_requests,
            seconds_between_writes=settings.seconds_between_writes,
            # Objects are fetched only when read: no GET of the repository or the issue up front.
            lazy=True,
        )

    @property
    def _repo(self) -> Repository:
        return self._client.get_repo(self.settings.repository)

    # ------------------------------------------------------------------ comments
    def upsert_comment(self, pr: int, marker: str, body: str, *, create: bool = True) -> CommentRef | None:
        """Create the PR comment whose body starts with `marker`, or update it in place
        (`create=False`: only update; None when there is no such comment).

        Each attempt looks the comment up again, so a create that failed half-way (the comment exists
        but the response was lost) is updated on retry rather than duplicated.
        """
        if not body.startswith(marker):
            raise ValueError("the comment body must start with its marker")

        def attempt() -> CommentRef | None:
            issue = self._repo.get_issue(pr)
            existing = next((c for c in issue.get_comments() if c.body.startswith(marker)), None)
            if existing is None and not create:
                return None
            if existing is None:
                created = issue.create_comment(body)
                return CommentRef(created.id, created.html_url, created=True)
            if existing.body != body:
                existing.edit(body)
            return CommentRef(existing.id, existing.html_url, created=False)

        return self._call(f"update the comment on pull request #{pr}", attempt)

    # ------------------------------------------------------------------ deployments
    def ensure_deployment(
        self,
        *,
        sha: str,
        environment: str,
        description: str,
        payload: dict[str, Any],
        transient: bool,
        production: bool,
        task: str = "deploy",
    ) -> int | None:
        """The Deployment of `sha` to `environment`: the existing one (a re-run of the same commit), or a
        new one. Returns its id, or None when GitHub refused."""

        def attempt() -> int:
            repo = self._repo
            for found in repo.get_deployments(sha=sha, task=task, environment=environment):
                return found.id
            created = repo.create_deployment(
                ref=sha,
                task=task,
                # The commit is already built and checked by this workflow: no merge, no status gate.
                auto_merge=False,
                required_contexts=[],
                payload=payload,
                environment=environment,
                description=description[:STATUS_DESCRIPTION_LIMIT],
                transient_environment=transient,
                production_environment=production,
            )
            return created.id

        return self._call(f"create a GitHub deployment for {environment}", attempt)

    def set_status(
        self,
        deployment_id: int,
        state: str,
        *,
        description: str,
        environment_url: str | None = None,
        log_url: str | None = None,
    ) -> bool:
        """Add a status (`in_progress`, `success`, `failure`, `error`, `inactive`) to a deployment."""

        def attempt() -> bool:
            extra: dict[str, Any] = {}
            if environment_url:
                extra["environment_url"] = environment_url
            if log_url:
                extra["target_url"] = log_url
            self._deployment(deployment_id).create_status(
                state, description=description[:STATUS_DESCRIPTION_LIMIT], auto_inactive=False, **extra
            )
            return True

        return bool(self._call(f"set deployment {deployment_id} to {state}", attempt))

    def deactivate(self, environment: str, *, keep: int | None = None, description: str) -> list[int]:
        """Mark the environment's deployments inactive (all but `keep`). Returns the ids changed."""

        def attempt() -> list[int]:
            changed = []
            for index, deployment in enumerate(self._repo.get_deployments(environment=environment)):
                if index >= DEACTIVATE_SCAN_LIMIT:
                    break
                if deployment.id == keep:
                    continue
                latest = next(iter(deployment.get_statuses()), None)
                if latest is not None and latest.state == "inactive":
                    continue
                deployment.create_status("inactive", description=description[:STATUS_DESCRIPTION_LIMIT])
                changed.append(deployment.id)
            return changed

        return self._call(f"deactivate the deployments of {environment}", attempt) or []

    def deployment_payloads(self, environment: str) -> list[dict[str, Any]]:
        """The payloads recorded on an environment's deployments, newest first."""

        def attempt() -> list[dict[str, Any]]:
            payloads = []
            for index, deployment in enumerate(self._repo.get_deployments(environment=environment)):
                if index >= DEACTIVATE_SCAN_LIMIT:
                    break
                if isinstance(deployment.payload, dict):
                    payloads.append(deployment.payload)
            return payloads

        return self._call(f"read the deployments of {environment}", attempt) or []

    def _deployment(self, deployment_id: int) -> Deployment:
        return self._repo.get_deployment(deployment_id)

    # ------------------------------------------------------------------ the bounded loop
    def _call(self, what: str, attempt: Callable[[], T]) -> T | None:
        delay = self.settings.backoff_seconds
        for number in range(self.settings.retries + 1):
            last = number == self.settings.retries
            try:
                return attempt()
            except GithubException as exc:
                if not _transient(exc) or last:
                    self._warn(f"GitHub: could not {what}: {_explain(exc)}")
                    return None
            except (requests.RequestException, OSError) as exc:
                if last:
                    self._warn(f"GitHub: could not {what}: {type(exc).__name__}: {exc}")
                    return None
            time.sleep(delay)
            delay *= 2
        return None


def _transient(exc: GithubException) -> bool:
    if exc.status >= 500 or exc.status == 429:
        return True
    # GitHub's secondary rate limit answers 403 with this message; waiting helps, permissions won't.
    return exc.status == 403 and "rate limit" in _message(exc).lower()


def _message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    return str(data.get("message") or exc.message or "")


def _explain(exc: GithubException) -> str:
    message = _message(exc) or "no message"
    hint = ""
    if exc.status == 403:
        hint = " (the token lacks permission: grant `pull-requests: write` and `deployments: write`)"
    elif exc.status == 401:
        hint = " (the github-token input is not a valid token)"
    return f"HTTP {exc.status}: {message}{hint}"

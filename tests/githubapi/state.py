"""What the fake GitHub remembers between requests: pulls, comments, deployments and their statuses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pull:
    number: int
    head_sha: str
    head_ref: str
    head_repo: str
    """`owner/name` of the head repository: differs from the base for fork pull requests."""
    base_ref: str = "main"
    title: str = "Change"
    state: str = "open"


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)


@dataclass
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment: str
    environment_url: str
    log_url: str
    target_url: str
    created_at: str = field(default_factory=now)


@dataclass
class Deployment:
    id: int
    sha: str
    ref: str
    task: str
    environment: str
    description: str | None
    payload: Any
    transient_environment: bool
    production_environment: bool
    created_at: str = field(default_factory=now)
    statuses: list[DeploymentStatus] = field(default_factory=list)

    @property
    def state(self) -> str | None:
        """The latest status, as GitHub shows it next to the environment."""
        return self.statuses[-1].state if self.statuses else None


@dataclass
class Repository:
    owner: str
    name: str
    default_branch: str = "main"
    pulls: dict[int, Pull] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def issue_comments(self, number: int) -> list[Comment]:
        return [c for c in self.comments if c.issue_number == number]

    def comment(self, comment_id: int) -> Comment | None:
        return next((c for c in self.comments if c.id == comment_id), None)

    def deployment(self, deployment_id: int) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)


class Ids:
    """Process-wide increasing ids, like GitHub's (never reused, never 0)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1001)

    def next(self) -> int:
        return next(self._counter)

"""Response bodies built from the description's own examples, filled from the fake's state.

Clients follow URLs found in bodies (PyGithub asserts they start with its base URL), so every example
URL is rewritten to the fake's base URL and the requested repository before the state is applied.
"""

from __future__ import annotations

from typing import Any

from tests.githubapi.spec import GITHUB_HOST_URL, GitHubDescription
from tests.githubapi.state import Comment, Deployment, DeploymentStatus, Pull, Repository

# Repositories the description's examples are written against.
EXAMPLE_REPOS = ("octocat/Hello-World", "octocat/example")
BOT_LOGIN = "github-actions[bot]"


class Resources:
    def __init__(self, description: GitHubDescription, base_url: str) -> None:
        self.description = description
        self.base_url = base_url.rstrip("/")

    def _example(self, name: str, repo: Repository) -> dict[str, Any]:
        return _rewrite(self.description.example(name), self.base_url, repo.full_name)

    def _user(self, repo: Repository, login: str) -> dict[str, Any]:
        user = self._example("issue-comment", repo)["user"]
        user_type = "Bot" if login.endswith("[bot]") else "User"
        return _rewrite_login(user, login) | {
            "type": user_type,
            "id": 41898282 if user_type == "Bot" else 583231,
        }

    def repository(self, repo: Repository) -> dict[str, Any]:
        body = self._example("full-repository-default-response", repo)
        body |= {
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user(repo, repo.owner) | {"type": "Organization"},
            "default_branch": repo.default_branch,
            "language": "Python",
            "fork": False,
            "template_repository": None,
        }
        # Only forks have a parent and a source; the example's nested copies also lack `language`,
        # which their schema requires.
        body.pop("parent", None)
        body.pop("source", None)
        return body

    def pull(self, repo: Repository, pull: Pull) -> dict[str, Any]:
        body = self._example("pull-request", repo)
        api = f"{self.base_url}/repos/{repo.full_name}"
        body |= {
            "number": pull.number,
            "id": 10_000 + pull.number,
            "url": f"{api}/pulls/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "html_url": f"https://github.com/{repo.full_name}/pull/{pull.number}",
            "state": pull.state,
            "title": pull.title,
            # The description's example team lacks a valid `type`; no reviewers keeps it schema-true.
            "requested_teams": [],
            "merged": False,
        }
        head_owner, head_name = pull.head_repo.split("/", 1)
        head_repo = Repository(owner=head_owner, name=head_name)
        body["head"] |= {
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "label": f"{head_owner}:{pull.head_ref}",
            "repo": self.repository(head_repo) | {"fork": pull.head_repo != repo.full_name},
        }
        body["base"] |= {
            "ref": pull.base_ref,
            "label": f"{repo.owner}:{pull.base_ref}",
            "repo": self.repository(repo),
        }
        return body

    def issue(self, repo: Repository, pull: Pull) -> dict[str, Any]:
        body = self._example("issue", repo)
        api = f"{self.base_url}/repos/{repo.full_name}"
        body |= {
            "number": pull.number,
            "id": 20_000 + pull.number,
            "url": f"{api}/issues/{pull.number}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "html_url": f"https://github.com/{repo.full_name}/pull/{pull.number}",
            "state": "closed" if pull.state == "closed" else "open",
            "title": pull.title,
            "comments": len(repo.issue_comments(pull.number)),
        }
        body["pull_request"] = {
            "url": f"{api}/pulls/{pull.number}",
            "html_url": f"https://github.com/{repo.full_name}/pull/{pull.number}",
            "diff_url": f"https://github.com/{repo.full_name}/pull/{pull.number}.diff",
            "patch_url": f"https://github.com/{repo.full_name}/pull/{pull.number}.patch",
            "merged_at": None,
        }
        return body

    def comment(self, repo: Repository, comment: Comment) -> dict[str, Any]:
        body = self._example("issue-comment", repo)
        api = f"{self.base_url}/repos/{repo.full_name}"
        body |= {
            "id": comment.id,
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{repo.full_name}/pull/{comment.issue_number}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{comment.issue_number}",
            "body": comment.body,
            "user": self._user(repo, comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": "NONE" if comment.user.endswith("[bot]") else "COLLABORATOR",
        }
        return body

    def deployment(self, repo: Repository, deployment: Deployment) -> dict[str, Any]:
        body = self._example("deployment-simple-example", repo)
        api = f"{self.base_url}/repos/{repo.full_name}"
        body |= {
            "id": deployment.id,
            "url": f"{api}/deployments/{deployment.id}",
            "statuses_url": f"{api}/deployments/{deployment.id}/statuses",
            "repository_url": api,
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": deployment.payload,
            "environment": deployment.environment,
            "original_environment": deployment.environment,
            "description": deployment.description,
            "creator": self._user(repo, BOT_LOGIN),
            "created_at": deployment.created_at,
            "updated_at": deployment.statuses[-1].created_at
            if deployment.statuses
            else deployment.created_at,
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
        }
        return body

    def deployment_status(
        self, repo: Repository, deployment: Deployment, status: DeploymentStatus
    ) -> dict[str, Any]:
        body = self._example("deployment-status", repo)
        api = f"{self.base_url}/repos/{repo.full_name}"
        body |= {
            "id": status.id,
            "url": f"{api}/deployments/{deployment.id}/statuses/{status.id}",
            "deployment_url": f"{api}/deployments/{deployment.id}",
            "repository_url": api,
            "state": status.state,
            "description": status.description,
            "environment": status.environment,
            "environment_url": status.environment_url,
            "log_url": status.log_url,
            "target_url": status.target_url,
            "creator": self._user(repo, BOT_LOGIN),
            "created_at": status.created_at,
            "updated_at": status.created_at,
        }
        return body

    @staticmethod
    def error(message: str, status: int) -> dict[str, Any]:
        return {
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": str(status),
        }


def _rewrite(node: Any, base_url: str, full_name: str) -> Any:
    if isinstance(node, dict):
        return {k: _rewrite(v, base_url, full_name) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, base_url, full_name) for v in node]
    if isinstance(node, str):
        for example_repo in EXAMPLE_REPOS:
            node = node.replace(f"/{example_repo}", f"/{full_name}")
        return node.replace(GITHUB_HOST_URL, base_url)
    return node


def _rewrite_login(user: dict[str, Any], login: str) -> dict[str, Any]:
    return {k: v.replace("/octocat", f"/{login}") if isinstance(v, str) else v for k, v in user.items()} | {
        "login": login
    }

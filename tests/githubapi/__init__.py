"""A local GitHub REST API for tests, validated against GitHub's official OpenAPI description."""

from tests.githubapi.server import Call, GitHubAPIServer
from tests.githubapi.spec import GitHubDescription

__all__ = ["Call", "GitHubAPIServer", "GitHubDescription"]

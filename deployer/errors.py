"""Typed errors. Every one is rendered by the CLI as a single line and a non-zero exit.

Raise the most specific class; put the culprit (file, flag, value) in the message, because the
message is all the user sees.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base of every error the deployer reports to the user."""

    exit_code: int = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Where the fault is in the user's project; the GitHub adapter turns these into annotations.
        self.file = file
        self.line = line

    def __str__(self) -> str:
        return self.message


class UsageError(DeployError):
    """A flag, input or argument has a bad value."""

    exit_code = 2


class NotBuiltYet(UsageError):
    """A command that exists in the CLI but is not implemented yet."""


class GitError(DeployError):
    """The repository cannot be read at the requested commit."""


class DiscoveryError(DeployError):
    """User code could not be imported, or environments could not be found."""


class GraphError(DeployError):
    """The depends_on graph is invalid (cycle, duplicate names)."""


class PlanError(DeployError):
    """The deploy cannot be planned (unmapped image, missing version, ...)."""


class BundleError(DeployError):
    """A code bundle cannot be built or extracted safely."""


class StorageError(DeployError):
    """Blob storage refused or failed an operation after retries."""


class BuildError(DeployError):
    """An image could not be rendered, built or pushed."""


class RegistryError(BuildError):
    """The OCI registry refused or failed an operation after retries."""


class ControlPlaneError(DeployError):
    """The Flyte control plane refused or failed a request."""


class VersionConflict(ControlPlaneError):
    """A different spec was sent under a version that already exists (versions are immutable)."""


class RunError(DeployError):
    """A deployed task could not be executed locally."""


class GitHubError(DeployError):
    """The GitHub API refused or failed a request after retries."""

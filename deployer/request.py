"""What one run is asked to do: which environments (`Selection`) and with which options (`Settings`).

The CLI's flags and the Action's inputs both become one `DeployRequest`; every command and the pipeline
take it. Stages below the pipeline never see it: each gets the previous stage's result and the few
settings it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.models import Model
from deployer.settings import Settings, load_settings


class Selection(Model):
    """Which environments to deploy, as `flyte deploy` names them."""

    path: Path | None = None
    """FILE (with `env_var` or `all_envs`) or DIR (with `recursive`)."""
    env_var: str | None = None
    """Name of the module-level variable bound to the environment to deploy."""
    all_envs: bool = False
    """Every environment created while importing `path`."""
    recursive: bool = False
    """Import every .py under `path` (git-ignored paths skipped)."""


class DeployRequest(Model):
    selection: Selection = Selection()
    settings: Settings

    @classmethod
    def of(
        cls,
        path: Path | None = None,
        env_var: str | None = None,
        *,
        all_envs: bool = False,
        recursive: bool = False,
        **settings: Any,
    ) -> DeployRequest:
        """A request from keyword values (library callers and tests); settings not given come from
        `FLYTE_DEPLOY_*` and the defaults, as for the CLI."""
        selection = Selection(path=path, env_var=env_var, all_envs=all_envs, recursive=recursive)
        return cls(selection=selection, settings=resolved(load_settings(settings)))

    def with_settings(self, **changes: Any) -> DeployRequest:
        return self.model_copy(update={"settings": self.settings.model_copy(update=changes)})


def resolved(settings: Settings) -> Settings:
    """`root_dir` made absolute (the current directory when unset), so every later stage agrees on it."""
    return settings.model_copy(update={"root_dir": settings.root})

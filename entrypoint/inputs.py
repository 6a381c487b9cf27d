"""The action's inputs (`INPUT_<NAME>`, hyphens kept) → `ActionInputs` → the pipeline's `DeployRequest`.

Every field of `ActionInputs` is an input in `action.yml` with the same default (a test checks both
ways). A bad value is a `UsageError` naming the input, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError

from deployer.errors import UsageError
from deployer.models import CopyStyle, DeployRequest, Mode, Model
from deployer.report.models import RunKind
from entrypoint.events import Decision

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class ActionInputs(Model):
    """The `with:` block of a workflow step, typed."""

    path: str = ""
    """Python file (with `env-var` or `all`) or directory (with `recursive`), relative to the workspace."""
    env_var: str = ""
    """Module-level variable bound to the TaskEnvironment to deploy (with a file `path`)."""
    all: bool = False
    recursive: bool = False
    root_dir: str = "."
    """Import root and bundle root, relative to the workspace."""
    copy_style: CopyStyle = CopyStyle.loaded_modules
    mode: Mode = Mode.auto
    registry: str = ""
    images: tuple[str, ...] = ()
    """One `NAME=URI` (or a bare default `URI`) per line."""
    base_image_mirror: tuple[str, ...] = ()
    """One `FROM=TO` per line."""
    registry_username: str = ""
    registry_password: SecretStr | None = None
    endpoint: str = ""
    insecure: bool = False
    api_key: SecretStr | None = None
    project: str = "flytesnacks"
    org: str = ""
    domain: str = "production"
    """Target of semver tag releases."""
    branch_domain: str = "staging"
    """Target of pushes to the default branch (and manual runs)."""
    preview_domain: str = "development"
    """Target of pull request previews; `{pr}` is replaced by the PR number (e.g. `pr-{pr}`)."""
    preview_version_prefix: str = "pr-{pr}-"
    """Put before a preview's version so each PR's versions stay apart and can be cleaned up."""
    preview_url: str = ""
    """Link shown for a deploy; `{project}`, `{domain}`, `{version}`, `{pr}`, `{sha}` are replaced."""
    storage: str = ""
    state_dir: str = ""
    version: str = ""
    github_token: SecretStr | None = None
    comment: bool = True
    dry_run: bool = False
    push: Literal["auto", "false"] = "auto"

    @property
    def secrets(self) -> tuple[str, ...]:
        values = (self.registry_password, self.api_key, self.github_token)
        return tuple(v.get_secret_value() for v in values if v is not None and v.get_secret_value())


def input_name(field: str) -> str:
    return field.replace("_", "-")


def input_env_key(field: str) -> str:
    return "INPUT_" + input_name(field).upper()


def read_inputs(environ: Mapping[str, str]) -> ActionInputs:
    values: dict[str, Any] = {}
    for field, info in ActionInputs.model_fields.items():
        raw = environ.get(input_env_key(field), "").strip()
        if not raw:
            continue
        name = input_name(field)
        annotation = info.annotation
        if annotation is bool:
            values[field] = _boolean(name, raw)
        elif annotation == tuple[str, ...]:
            values[field] = _lines(raw)
        else:
            values[field] = raw.lower() if field in ("copy_style", "mode", "push") else raw
    try:
        inputs = ActionInputs(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        raise UsageError(
            f"input `{input_name(field)}`: {values.get(field)!r} is not valid ({_allowed(field, error)})"
        ) from None
    _check(inputs)
    return inputs


def unknown_inputs(environ: Mapping[str, str]) -> list[str]:
    """`INPUT_*` variables no field reads (a misspelt `with:` key)."""
    known = {input_env_key(f) for f in ActionInputs.model_fields}
    return sorted(
        k.removeprefix("INPUT_").lower() for k in environ if k.startswith("INPUT_") and k not in known
    )


def _boolean(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"input `{name}`: {raw!r} is not a boolean (use true or false)")


def _lines(raw: str) -> tuple[str, ...]:
    """Multi-line list inputs: one item per line (commas and spaces also separate); `#` lines skipped."""
    items: list[str] = []
    for line in raw.splitlines():
        if not line.lstrip().startswith("#"):
            items.extend(part for part in re.split(r"[\s,]+", line) if part)
    return tuple(items)


def _allowed(field: str, error: Mapping[str, Any]) -> str:
    choices = {
        "copy_style": ", ".join(c.value for c in CopyStyle),
        "mode": ", ".join(m.value for m in Mode),
        "push": "auto, false",
    }
    return f"use one of: {choices[field]}" if field in choices else str(error.get("msg", "invalid"))


def _check(inputs: ActionInputs) -> None:
    for field in ("preview_domain", "preview_version_prefix", "preview_url"):
        unknown = set(_PLACEHOLDER.findall(getattr(inputs, field))) - {
            "pr",
            "project",
            "domain",
            "version",
            "sha",
        }
        if unknown:
            raise UsageError(f"input `{input_name(field)}`: unknown placeholder {{{sorted(unknown)[0]}}}")
    if "{pr}" not in inputs.preview_domain and "{pr}" not in inputs.preview_version_prefix:
        raise UsageError(
            "inputs `preview-domain` / `preview-version-prefix`: one of them must contain {pr}, "
            "or every pull request's preview would overwrite the others"
        )
    if inputs.registry_username and inputs.registry_password is None:
        raise UsageError("input `registry-password` is required with `registry-username`")
    if inputs.env_var and inputs.all:
        raise UsageError(
            "inputs `env-var` and `all` exclude each other: deploy one environment or all of them"
        )


def target_domain(inputs: ActionInputs, decision: Decision) -> str:
    """Where this run deploys: previews, releases and default-branch pushes have their own targets."""
    if decision.intent in (RunKind.preview, RunKind.cleanup):
        return inputs.preview_domain.replace("{pr}", str(decision.pr))
    if decision.intent is RunKind.release:
        return inputs.domain
    return inputs.branch_domain


def preview_prefix(inputs: ActionInputs, pr: int) -> str:
    return inputs.preview_version_prefix.replace("{pr}", str(pr))


def workspace_path(workspace: Path, value: str, name: str, *, must_exist: bool = True) -> Path:
    """A workspace-relative input as an absolute path that stays inside the workspace."""
    path = (workspace / value).resolve()
    if not path.is_relative_to(workspace.resolve()):
        raise UsageError(f"input `{name}`: {value!r} points outside the workspace")
    if must_exist and not path.exists():
        raise UsageError(f"input `{name}`: {value!r} does not exist in the repository")
    return path


def project_path(inputs: ActionInputs, workspace: Path) -> Path:
    if not inputs.path:
        raise UsageError(
            "input `path` is required: a Python file (with `env-var` or `all`) or a directory "
            "(with `recursive`)"
        )
    path = workspace_path(workspace, inputs.path, "path")
    if path.is_dir() and not inputs.recursive:
        raise UsageError(f"input `path`: {inputs.path!r} is a directory: set `recursive: true`")
    if path.is_file() and not (inputs.env_var or inputs.all):
        raise UsageError(f"input `path`: {inputs.path!r} is a file: set `env-var` or `all: true`")
    return path


def to_request(
    inputs: ActionInputs,
    decision: Decision,
    workspace: Path,
    *,
    version: str | None = None,
    require_project: bool = True,
) -> DeployRequest:
    """The pipeline request for this run. `version`: the resolved version (a preview's is prefixed).

    `require_project=False` (a preview cleanup, which reads the project only to name its image
    repositories): a `path` that no longer works leaves `path` unset instead of failing."""
    root_dir = workspace_path(workspace, inputs.root_dir, "root-dir")
    try:
        path: Path | None = project_path(inputs, workspace)
    except UsageError:
        if require_project:
            raise
        path = None
    state_dir = (
        workspace_path(workspace, inputs.state_dir, "state-dir", must_exist=False)
        if inputs.state_dir
        else None
    )
    build_only = decision.kind is RunKind.build_only
    return DeployRequest(
        path=path,
        env_var=inputs.env_var or None,
        all_envs=inputs.all,
        recursive=inputs.recursive,
        root_dir=root_dir,
        copy_style=inputs.copy_style,
        mode=inputs.mode,
        version=version or inputs.version or None,
        project=inputs.project,
        domain=target_domain(inputs, decision),
        org=inputs.org,
        registry=inputs.registry or None,
        images=inputs.images,
        base_image_mirrors=inputs.base_image_mirror,
        push=not build_only,
        dry_run=inputs.dry_run,
        endpoint=inputs.endpoint or None,
        insecure=inputs.insecure,
        # Build-only runs (forks) never see a secret, even when one is configured.
        api_key=None if build_only else inputs.api_key,
        storage=inputs.storage or None,
        state_dir=state_dir,
    )

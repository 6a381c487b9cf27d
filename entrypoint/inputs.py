"""The action's inputs (`INPUT_<NAME>`, hyphens kept) → `ActionInputs` → the pipeline's `DeployRequest`.

Inputs that are options of the CLI too (`copy-style`, `registry`, `endpoint`, ...) are read onto the one
settings model (`deployer.settings.Settings`, each field names its input); the rest (what to deploy, the
targets of each trigger, the PR comment) are the Action's own. Every input is declared in `action.yml`
with the same default (a test checks both ways). A bad value is a `UsageError` naming the input.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError

from deployer.errors import UsageError
from deployer.models import Model, TriggerPolicy
from deployer.report.models import RunKind
from deployer.request import DeployRequest, Selection
from deployer.settings import Settings, load_settings, options
from entrypoint.events import Decision

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Inputs naming a path inside the workspace: read as text, resolved against the workspace.
_WORKSPACE_PATHS = {"root_dir", "state_dir"}


class ActionInputs(Model):
    """The `with:` block of a workflow step, typed: the Action's own inputs plus `settings`."""

    path: str = ""
    """Python file (with `env-var` or `all`) or directory (with `recursive`), relative to the workspace."""
    env_var: str = ""
    """Module-level variable bound to the environment to deploy (with a file `path`)."""
    all: bool = False
    recursive: bool = False
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
    github_token: SecretStr | None = None
    comment: bool = True
    push: Literal["auto", "false"] = "auto"
    root_dir: str = ""
    """Import root and bundle root, relative to the workspace (default: the workspace)."""
    state_dir: str = ""
    """Control plane and local storage state, relative to the workspace."""
    settings: Settings
    """Every input that is also a CLI option (`FLYTE_DEPLOY_*` variables fill the ones not given)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        s = self.settings
        values = (s.registry_password, s.api_key, self.github_token)
        return tuple(v.get_secret_value() for v in values if v is not None and v.get_secret_value())

    def value(self, name: str) -> Any:
        """The value of input `name` (hyphenated, as in action.yml)."""
        field = name.replace("-", "_")
        if field in _OWN:
            return getattr(self, field)
        return getattr(self.settings, _SHARED[name])


_OWN = {f for f in ActionInputs.model_fields if f != "settings"}
_SHARED = {
    info.action_input: info.name
    for info in options()
    if info.action_input and info.name not in _WORKSPACE_PATHS
}
"""Input name → settings field, for the inputs that are settings."""


def input_name(field: str) -> str:
    return field.replace("_", "-")


def input_env_key(field: str) -> str:
    return "INPUT_" + input_name(field).upper()


def input_names() -> list[str]:
    """Every input the action reads, as action.yml spells them."""
    return sorted({input_name(f) for f in _OWN} | set(_SHARED))


def input_default(name: str) -> Any:
    field = name.replace("-", "_")
    if field in _OWN:
        return ActionInputs.model_fields[field].default
    return Settings.model_fields[_SHARED[name]].default


def read_inputs(environ: Mapping[str, str]) -> ActionInputs:
    own: dict[str, Any] = {}
    for field in _OWN:
        raw = environ.get(input_env_key(field), "").strip()
        if raw:
            own[field] = _parse(
                input_name(field), ActionInputs.model_fields[field].annotation, raw, field == "push"
            )
    shared: dict[str, Any] = {}
    for name, field in _SHARED.items():
        raw = environ.get(f"INPUT_{name.upper()}", "").strip()
        if raw:
            shared[field] = _parse(name, Settings.model_fields[field].annotation, raw, lower=False)
    settings = load_settings(shared, source="input", environ=environ)
    try:
        inputs = ActionInputs(**own, settings=settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        raise UsageError(
            f"input `{input_name(field)}`: {own.get(field)!r} is not valid ({_allowed(field, error)})"
        ) from None
    _check(inputs)
    return inputs


def unknown_inputs(environ: Mapping[str, str]) -> list[str]:
    """`INPUT_*` variables no input reads (a misspelt `with:` key)."""
    known = {f"INPUT_{name.upper()}" for name in input_names()}
    return sorted(
        k.removeprefix("INPUT_").lower() for k in environ if k.startswith("INPUT_") and k not in known
    )


def _parse(name: str, annotation: Any, raw: str, lower: bool) -> Any:
    base = _base_type(annotation)
    if base is bool:
        return _boolean(name, raw)
    if typing.get_origin(base) is tuple:
        return _lines(raw)
    if lower or (isinstance(base, type) and issubclass(base, enum.Enum)):
        return raw.lower()
    return raw


def _base_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType) and len(args) == 1:
        return _base_type(args[0])
    return annotation


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
    return "use one of: auto, false" if field == "push" else str(error.get("msg", "invalid"))


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
    if inputs.settings.registry_username and inputs.settings.registry_password is None:
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


def kind_settings(inputs: ActionInputs, decision: Decision) -> dict[str, Any]:
    """What the kind of deploy decides: previews register triggers inactive (a preview never fires a
    schedule) and, unless their domain is their own (`{pr}` in it), suffix apps so they never replace
    another deploy's; releases register triggers as the code says; branch pushes follow `triggers`."""
    if decision.intent in (RunKind.preview, RunKind.cleanup):
        shared_domain = "{pr}" not in inputs.preview_domain
        return {
            "trigger_policy": TriggerPolicy.inactive,
            "app_suffix": f"-pr-{decision.pr}" if shared_domain else "",
        }
    if decision.intent is RunKind.release:
        return {"trigger_policy": TriggerPolicy.as_code}
    return {}


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
    runner_temp: Path | None = None,
) -> DeployRequest:
    """The pipeline request for this run. `version`: the resolved version (a preview's is prefixed).
    `runner_temp`: the runner's temp dir, home of the state dir unless `state-dir` says otherwise (the
    checkout must not get root-owned state, see `entrypoint.workspace`).

    `require_project=False` (a preview cleanup, which reads the project only to name its image
    repositories): a `path` that no longer works leaves `path` unset instead of failing."""
    root_dir = workspace_path(workspace, inputs.root_dir or ".", "root-dir")
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
    settings = inputs.settings
    selection = Selection(
        path=path, env_var=inputs.env_var or None, all_envs=inputs.all, recursive=inputs.recursive
    )
    changes: dict[str, Any] = {
        "root_dir": root_dir,
        "state_dir": state_dir
        or settings.state_dir
        or (runner_temp / "flyte-deploy" if runner_temp else None),
        "domain": target_domain(inputs, decision),
        "version": version or settings.version,
        "push": not build_only,
        **kind_settings(inputs, decision),
    }
    if build_only:
        # Build-only runs (forks) never see a secret, even when one is configured.
        changes |= {"api_key": None, "registry_password": None}
    return DeployRequest(selection=selection, settings=settings.model_copy(update=changes))

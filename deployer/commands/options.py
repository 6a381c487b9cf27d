"""The flags shared by several commands, declared once from `deployer.settings`.

`@uses_request(*groups)` gives a command the flags of those settings groups (plus single settings named by
`fields=`, and with `selection=True` the FILE VAR / --all / --recursive arguments) and hands it one ready
`DeployRequest`.
Flags keep the meaning they have in `flyte deploy` where the flag exists there.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr

from deployer.request import DeployRequest, Selection, resolved
from deployer.settings import OptionInfo, Settings, load_settings, options

F = TypeVar("F", bound=Callable[..., Any])

GROUPS = ("root", "code", "version", "target", "build", "push", "control_plane", "storage")
PLAN = ("root", "code", "version", "target", "build")
BUILD = (*PLAN, "push")
DEPLOY = (*BUILD, "control_plane", "storage")
RUN_FIELDS = (
    *("root_dir", "version", "project", "domain", "org"),
    *("endpoint", "insecure", "api_key", "state_dir"),
)
"""`run` reads a deployed task back: where it was deployed, and nothing about building or registering."""
RUN_DOCS = {
    "root_dir": "Project root deployed from (default: the current directory); the state dir defaults to "
    "ROOT_DIR/.flyte-deploy.",
    "version": "Deployed version to run. Default: the newest deployed version.",
}

PathArg = Annotated[
    Path | None,
    typer.Argument(help="Python file to import (with VAR or --all), or a directory with --recursive."),
]
VarArg = Annotated[
    str | None, typer.Argument(help="Module-level variable bound to the environment to deploy.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every environment created while importing FILE.")]
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive", "-r", help="Import every .py under DIR (git-ignored paths skipped).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_SELECTION = ("path", "env_var", "all_envs", "recursive")


def uses_request(
    *groups: str,
    selection: bool = False,
    fields: tuple[str, ...] = (),
    docs: Mapping[str, str] | None = None,
) -> Callable[[F], Callable[..., Any]]:
    """Decorate `command(request: DeployRequest, ...)`: typer sees the flags of `groups` and of the
    settings named in `fields` (plus the selection arguments) instead of `request`, and the command gets
    the request they make. Settings without a flag still come from `FLYTE_DEPLOY_*` and the defaults.
    `docs` replaces a setting's help where it means less to this command than the settings say."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown settings groups {sorted(unknown)}")
    flagged = {info.name for info in options() if info.flags}
    if set(fields) - flagged:
        raise ValueError(f"not settings with a flag: {sorted(set(fields) - flagged)}")
    shared = [info for info in options() if info.flags and (info.group in groups or info.name in fields)]

    def decorate(command: F) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "request"
        ]
        added = _selection_parameters() if selection else []
        added += [_parameter(info, (docs or {}).get(info.name)) for info in shared]
        names = {p.name for p in own}
        clash = names & {p.name for p in added}
        if clash:
            raise ValueError(f"{command.__name__} declares shared flags itself: {sorted(clash)}")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            chosen = Selection(**{k: kwargs.pop(k) for k in _SELECTION if k in kwargs}) if selection else None
            given = {info.name: _value(kwargs.pop(info.name)) for info in shared}
            settings = resolved(load_settings(given))
            request = DeployRequest(selection=chosen or Selection(), settings=settings)
            return command(request=request, **kwargs)

        # Positional arguments first, as typer orders the command line.
        params = sorted([*added, *own], key=lambda p: not _is_argument(p))
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _selection_parameters() -> list[inspect.Parameter]:
    kind = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("path", kind, default=None, annotation=PathArg),
        inspect.Parameter("env_var", kind, default=None, annotation=VarArg),
        inspect.Parameter("all_envs", kind, default=False, annotation=AllOpt),
        inspect.Parameter("recursive", kind, default=False, annotation=RecursiveOpt),
    ]


def _parameter(info: OptionInfo, doc: str | None = None) -> inspect.Parameter:
    """One typer option for a settings field. Its default is None ("not given"), so the variable and
    the model's default still apply; both are shown in --help."""
    cli_type = _cli_type(Settings.model_fields[info.name].annotation)
    extra: dict[str, Any] = {}
    if isinstance(cli_type, type) and issubclass(cli_type, enum.Enum):
        extra["case_sensitive"] = False
    # A command's own doc says what the default means for it.
    env = info.env[0]
    help_text = f"{doc} (env {env})" if doc else f"{info.doc} (env {env}; default: {info.default})"
    option = typer.Option(*info.flags, help=help_text, show_default=False, **extra)
    annotation = Annotated[cli_type | None, option]  # type: ignore[valid-type]
    return inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _cli_type(annotation: Any) -> Any:
    """The type typer parses a field's flag as: lists for tuples, plain strings for secrets."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _cli_type(args[0])
    if origin is tuple:
        return list[str]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _cli_type(args[0])
    if annotation is SecretStr:
        return str
    return annotation


def _value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value) or None
    return value


def _is_argument(parameter: inspect.Parameter) -> bool:
    metadata = getattr(parameter.annotation, "__metadata__", ())
    return any(isinstance(m, typer.models.ArgumentInfo) for m in metadata)

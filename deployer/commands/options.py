"""The flags shared by several commands, declared once from `deployer.settings`.

`@uses_request(*groups)` gives a command the flags of those settings groups (and, with
`selection=True`, the FILE VAR / --all / --recursive arguments) and hands it one ready `DeployRequest`.
Flags keep the meaning they have in `flyte deploy` where the flag exists there.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import Callable
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


def uses_request(*groups: str, selection: bool = False) -> Callable[[F], Callable[..., Any]]:
    """Decorate `command(request: DeployRequest, ...)`: typer sees the flags of `groups` (plus the
    selection arguments) instead of `request`, and the command gets the request they make."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown settings groups {sorted(unknown)}")
    fields = [info for info in options() if info.group in groups and info.flags]

    def decorate(command: F) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "request"
        ]
        added = _selection_parameters() if selection else []
        added += [_parameter(info) for info in fields]
        names = {p.name for p in own}
        clash = names & {p.name for p in added}
        if clash:
            raise ValueError(f"{command.__name__} declares shared flags itself: {sorted(clash)}")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            chosen = Selection(**{k: kwargs.pop(k) for k in _SELECTION if k in kwargs}) if selection else None
            given = {info.name: _value(kwargs.pop(info.name)) for info in fields}
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


def _parameter(info: OptionInfo) -> inspect.Parameter:
    """One typer option for a settings field. Its default is None ("not given"), so the variable and
    the model's default still apply; both are shown in --help."""
    cli_type = _cli_type(Settings.model_fields[info.name].annotation)
    extra: dict[str, Any] = {}
    if isinstance(cli_type, type) and issubclass(cli_type, enum.Enum):
        extra["case_sensitive"] = False
    help_text = f"{info.doc} (env {info.env[0]}; default: {info.default})"
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


# -- flags of `run` until it moves onto `uses_request` too ----------------------------------------------
ProjectOpt = Annotated[
    str, typer.Option("--project", "-p", envvar="FLYTE_DEPLOY_PROJECT", help="Flyte project.")
]
DomainOpt = Annotated[str, typer.Option("--domain", "-d", envvar="FLYTE_DEPLOY_DOMAIN", help="Flyte domain.")]
OrgOpt = Annotated[str, typer.Option("--org", envvar="FLYTE_DEPLOY_ORG", help="Flyte organization.")]
EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint", envvar="FLYTE_DEPLOY_ENDPOINT", help="Flyte control plane URL."),
]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Plain HTTP to the control plane.")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="FLYTE_DEPLOY_API_KEY", help="Control plane credential.", show_default=False
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="FLYTE_DEPLOY_STATE_DIR", help="Embedded control plane state."),
]

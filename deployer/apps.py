"""The apps of a deploy: the name each `flyte.app.AppEnvironment` is deployed under, checked up front.

Unlike tasks, apps are not versioned: the control plane keeps one app per (project, domain, name) with a
revision counter, and a deploy updates it in place. So a PR preview that shares a domain with other
deploys gets its own app names (`--app-suffix`, the Action: `-pr-N`), and every app we deploy is labelled
with the version that deployed it, which is how a preview cleanup finds the preview's apps.
"""

from __future__ import annotations

import re
from typing import Any

from deployer import sdk
from deployer.errors import PlanError
from deployer.models import DeployMode, PlannedApp

VERSION_LABEL = "flyte-deploy/version"
"""App label naming the version that deployed it (preview cleanup deletes apps by its prefix)."""
MAX_NAME = 30
"""flyteidl2 `app.Identifier.name`: at most 30 characters of `[A-Za-z0-9-]`, alphanumeric at both ends."""
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def planned_app(env: Any, suffix: str) -> PlannedApp:
    """The app `env` deploys as, or a `PlanError` naming it when the control plane would refuse the name."""
    name = f"{env.name}{suffix}"
    where = f"app {env.name!r}" + (f" (deployed as {name!r})" if suffix else "")
    if len(name) > MAX_NAME:
        raise PlanError(
            f"{where}: the name is {len(name)} characters and Flyte app names have at most {MAX_NAME}; "
            "shorten the AppEnvironment's name" + (" or --app-suffix" if suffix else ""),
            file=_declared(env),
        )
    if not _NAME.fullmatch(name):
        raise PlanError(
            f"{where}: Flyte app names are letters, digits and '-', and start and end with a letter or digit",
            file=_declared(env),
        )
    port = env.get_port().port if hasattr(env, "get_port") else None
    return PlannedApp(name=name, port=port, type=getattr(env, "type", None))


def app_mode(env: Any, mode: DeployMode, reason: str, no_bundle: bool) -> tuple[DeployMode, str]:
    """An app's mode: as planned, except that an app served by its `@server` function (no `args`, no
    `command`) needs the code bundle, since flyte's `fserve` loads the app from the bundle only."""
    if not sdk.app_serves_from_bundle(env):
        return mode, reason
    if no_bundle:
        raise PlanError(
            f"app {env.name!r}: its @server function is loaded by fserve from the code bundle, and "
            "--copy-style none ships none, so it could not start: ship a bundle, or give the app `args`",
            file=_declared(env),
        )
    if mode == "container":
        return "bundle", "its @server function is loaded by fserve from the code bundle"
    return mode, reason


def update_reason(version: str, sha: str | None) -> str:
    """The reason an app update is recorded with: which version (and commit) replaced it."""
    commit = f" (commit {sha[:12]})" if sha else ""
    return f"flyte-deploy: version {version}{commit}"


def _declared(env: Any) -> str | None:
    declared = sdk.declaring_file(env)
    return str(declared) if declared else None

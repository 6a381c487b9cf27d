"""`flyte-deploy run`."""

from __future__ import annotations

from deployer.errors import NotBuiltYet


def command() -> None:
    """(not built yet)"""
    raise NotBuiltYet("`flyte-deploy run` is not built yet")

"""`flyte-deploy bundle`."""

from __future__ import annotations

from deployer.errors import NotBuiltYet


def command() -> None:
    """(not built yet)"""
    raise NotBuiltYet("`flyte-deploy bundle` is not built yet")

"""`flyte-deploy deploy`."""

from __future__ import annotations

from deployer.errors import NotBuiltYet


def command() -> None:
    """(not built yet)"""
    raise NotBuiltYet("`flyte-deploy deploy` is not built yet")

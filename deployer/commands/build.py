"""`flyte-deploy build`."""

from __future__ import annotations

from deployer.errors import NotBuiltYet


def command() -> None:
    """(not built yet)"""
    raise NotBuiltYet("`flyte-deploy build` is not built yet")

"""`flyte-deploy preview ...`: PR preview housekeeping."""

from __future__ import annotations

import typer

from deployer.errors import NotBuiltYet

app = typer.Typer(help="PR preview deploys: clean up a closed PR's preview.", no_args_is_help=True)


@app.command("cleanup")
def cleanup(pr: int = typer.Option(..., "--pr", help="Pull request number.")) -> None:
    """(not built yet)"""
    raise NotBuiltYet("`flyte-deploy preview cleanup` is not built yet")

"""`flyte-deploy config`: every option, where it is read from, and the value it has here and now."""

from __future__ import annotations

from typing import Annotated

import typer

MarkdownOpt = Annotated[bool, typer.Option("--markdown", help="The README's table of options instead.")]


def command(markdown: MarkdownOpt = False, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every option with its flag, Action input, variable and current value (secrets masked)."""
    from deployer import output
    from deployer.settings import load_settings, markdown_table

    if markdown:
        output.emit_text(markdown_table())
        return
    output.emit_settings(load_settings(), as_json=as_json)

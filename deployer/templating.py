"""The one jinja2 environment for every template (Dockerfiles, PR comment, step summary)."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    # In a wheel the templates ship as deployer/templates; in a source checkout they live at the top.
    packaged = Path(str(resources.files("deployer"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)

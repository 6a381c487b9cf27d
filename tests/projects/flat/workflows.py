"""Flat layout: `workflows.py` next to the `tasks/` and `utils/` packages (root_dir = this folder)."""

import flyte
from tasks.stats import mean
from utils.text import normalize

env = flyte.TaskEnvironment(name="flat", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")


@env.task
async def average(values: list[float]) -> float:
    return mean(values)


@env.task
async def clean(text: str) -> str:
    return normalize(text)


@env.task
async def report(values: list[float]) -> str:
    # Imported only when the task runs: `loaded_modules` leaves it out, `all` bundles it.
    from utils.lazy_report import render

    return render(values)

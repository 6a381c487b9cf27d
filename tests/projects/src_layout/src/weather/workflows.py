"""src/ layout: plan with `--root-dir src` so the module is `weather.workflows`."""

import flyte

from weather.convert import to_fahrenheit

env = flyte.TaskEnvironment(name="weather", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")


@env.task
async def fahrenheit(celsius: float) -> float:
    return to_fahrenheit(celsius)

"""A small Flyte 2 project: `analysis` depends on `prep`, so deploying it brings `prep` first."""

import flyte
from hello_lib.text import shout

image = flyte.Image.from_debian_base(python_version=(3, 11))

prep = flyte.TaskEnvironment(name="prep", image=image)
analysis = flyte.TaskEnvironment(name="analysis", image=image, depends_on=[prep])


@prep.task
async def clean(text: str) -> str:
    return " ".join(text.split())


@analysis.task
async def greet(name: str) -> str:
    return f"Hello, {shout(name)}!"


@analysis.task
async def word_count(text: str) -> int:
    return len(text.split())

"""`viz` depends on `ml`, which depends on `prep`: deploying viz brings the other two first."""

import flyte

from pipeline.ml import ml, train

viz = flyte.TaskEnvironment(name="viz", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1", depends_on=[ml])


@viz.task
async def chart(n: int) -> str:
    score = await train(n)
    return "#" * int(score)

import flyte

from pipeline.prep import load, prep

ml = flyte.TaskEnvironment(name="ml", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1", depends_on=[prep])


@ml.task
async def train(n: int) -> float:
    data = await load(n)
    return sum(data) / max(len(data), 1)

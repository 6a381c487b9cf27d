import flyte

prep = flyte.TaskEnvironment(name="prep", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")


@prep.task
async def load(n: int) -> list[int]:
    return list(range(n))

"""The environment is chosen by `flyte.current_domain()` (the `--domain` flag at deploy time)."""

import flyte

if flyte.current_domain() == "production":
    env = flyte.TaskEnvironment(
        name="etl-prod",
        image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1",
        resources=flyte.Resources(cpu=2, memory="2Gi"),
    )
else:
    env = flyte.TaskEnvironment(name="etl-dev", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")


@env.task
async def extract(rows: int) -> int:
    return rows

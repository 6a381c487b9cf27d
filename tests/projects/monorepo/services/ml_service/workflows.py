"""Monorepo: a service importing a shared library from `libs/` (root_dir = the monorepo root)."""

import flyte
from libs.common.features import scale

env = flyte.TaskEnvironment(name="ml-service", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")


@env.task
async def featurize(values: list[float]) -> list[float]:
    return scale(values, 2.0)

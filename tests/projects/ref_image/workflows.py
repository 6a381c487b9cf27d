"""An image chosen at deploy time: `--image trainer=URI` fills `Image.from_ref_name("trainer")`."""

import flyte

env = flyte.TaskEnvironment(name="trainer", image=flyte.Image.from_ref_name("trainer"))


@env.task
async def fit(epochs: int) -> int:
    return epochs * 2

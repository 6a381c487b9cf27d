"""Hybrid: `dev` runs a published image as-is (code ships in a bundle); `prod` has an image spec of its
own, so the code is built into its image (container mode when a Docker engine answers)."""

import flyte

dev = flyte.TaskEnvironment(name="dev", image="ghcr.io/flyteorg/flyte:py3.11-v2.12.1")

prod = flyte.TaskEnvironment(
    name="prod",
    image=flyte.Image.from_debian_base(python_version=(3, 11)).with_env_vars({"APP_MODE": "production"}),
)


@dev.task
async def dev_greet(name: str) -> str:
    return f"hello {name} (dev)"


@prod.task
async def prod_greet(name: str) -> str:
    return f"hello {name}"

"""Task shapes of the runtime: a pod-template task, tasks needing secrets (an env var and a file), and a
task whose own code raises. Run by tests/test_run_runtime.py in bundle and container mode."""

import os
from pathlib import Path

import flyte

image = flyte.Image.from_debian_base(python_version=(3, 11))


def _pod_template() -> flyte.PodTemplate:
    try:
        from kubernetes.client import V1Container, V1EnvVar, V1PodSpec
    except ImportError:
        # Only serializing the task (at deploy) reads the pod spec; its container runs without
        # the kubernetes package, as Flyte's default image has none.
        return flyte.PodTemplate(primary_container_name="main")
    spec = V1PodSpec(
        containers=[
            V1Container(name="main", env=[V1EnvVar(name="GREETING", value="hello from the pod spec")]),
            V1Container(name="sidecar", image="busybox:1.36", command=["sleep", "3600"]),
        ]
    )
    return flyte.PodTemplate(primary_container_name="main", pod_spec=spec, labels={"team": "runtime"})


pod = flyte.TaskEnvironment(name="pod", image=image, pod_template=_pod_template())

vault = flyte.TaskEnvironment(
    name="vault",
    image=image,
    secrets=[
        flyte.Secret(key="api-token", as_env_var="API_TOKEN"),
        flyte.Secret(key="db-password", mount="/etc/flyte/secrets"),
    ],
)

checks = flyte.TaskEnvironment(name="checks", image=image)


@pod.task
async def greeting(name: str) -> str:
    return f"{os.environ['GREETING']}, {name}"


@vault.task
async def credentials() -> str:
    """What the task received, without echoing the values: their lengths and last characters."""
    token = os.environ["API_TOKEN"]
    if token.startswith("revoked-"):
        print(f"checking token {token}")
        raise PermissionError(f"token {token} was refused")
    secrets_dir = Path(os.getenv("FLYTE_SECRETS_DEFAULT_DIR", "/etc/flyte/secrets"))
    password = (secrets_dir / "db-password").read_text()
    return f"token {len(token)} chars ..{token[-2:]}, password {len(password)} chars ..{password[-2:]}"


@checks.task
async def positive(value: int) -> int:
    if value < 0:
        raise ValueError(f"bad value {value}: must not be negative")
    return value


@checks.task
async def environment() -> list[str]:
    """The names of the variables the task process sees."""
    return sorted(os.environ)

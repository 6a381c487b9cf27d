"""Shapes: one task per kind of input and output `flyte-deploy run` reads from a command line and prints
(env `shapes`), and the shapes of task its runtime has to start (envs `pod`, `vault`, `checks`): a
pod-template task, tasks needing secrets (an env var and a file), a task whose own code raises.

The image is a spec (Flyte's Debian base, no layers), so `--mode container` builds the code into it and
`--mode bundle` (or no Docker engine) runs the base as-is with the code in a bundle.
"""

import datetime as dt
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

import flyte
from flyte.io import Dir, File
from pydantic import BaseModel

image = flyte.Image.from_debian_base(python_version=(3, 11))
env = flyte.TaskEnvironment(name="shapes", image=image)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@dataclass
class Point:
    x: float
    y: float
    label: str = ""


@dataclass
class Segment:
    start: Point
    end: Point
    tags: list[str] = field(default_factory=list)


class Order(BaseModel):
    item: str
    quantity: int
    rush: bool = False


class Invoice(BaseModel):
    order: Order
    total: float
    due: dt.datetime


@env.task
async def later(when: dt.datetime, by: dt.timedelta) -> dt.datetime:
    return when + by


@env.task
async def weekday(day: dt.date) -> str:
    return day.strftime("%A")


@env.task
async def tomorrow(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=1)


@env.task
async def span(start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    return end - start


@env.task
async def complement(color: Color) -> Color:
    return {Color.RED: Color.GREEN, Color.GREEN: Color.RED, Color.BLUE: Color.BLUE}[color]


@env.task
async def midpoint(segment: Segment) -> Point:
    a, b = segment.start, segment.end
    return Point(x=(a.x + b.x) / 2, y=(a.y + b.y) / 2, label="+".join(segment.tags))


@env.task
async def bill(order: Order, unit_price: float) -> Invoice:
    total = order.quantity * unit_price * (1.5 if order.rush else 1.0)
    return Invoice(order=order, total=total, due=dt.datetime(2024, 1, 31, tzinfo=dt.UTC))


@env.task
async def tally(words: list[str], weights: dict[str, int]) -> dict[str, int]:
    return {word: weights.get(word, 1) * words.count(word) for word in sorted(set(words))}


@env.task
async def flags(on: bool, ratio: float, count: int, name: str) -> str:
    return f"on={on} ratio={ratio} count={count} name={name}"


@env.task
async def greet(name: str, greeting: str = "Hello", times: int = 1, shout: bool | None = None) -> str:
    text = " ".join([f"{greeting}, {name}!"] * times)
    return text.upper() if shout else text


@env.task
async def count_lines(doc: File) -> int:
    async with doc.open("rb") as handle:
        data = await handle.read()
    return len(bytes(data).decode().splitlines())


@env.task
async def write_report(title: str, lines: int) -> File:
    path = Path("report.txt")
    path.write_text(f"# {title}\n" + "".join(f"line {n}\n" for n in range(1, lines + 1)))
    return await File.from_local(str(path))


@env.task
async def list_dir(folder: Dir) -> list[str]:
    local = Path(await folder.download())
    return sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())


@env.task
async def make_dir(names: list[str]) -> Dir:
    root = Path("made")
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / "sub" / f"{name}.txt").write_text(f"{name}\n")
    return await Dir.from_local(str(root))


@env.task
async def nothing_back(note: str) -> None:
    print(note)


@env.task
async def pair(n: int) -> tuple[int, str]:
    return n * 2, f"n={n}"


# -- what the runtime starts ---------------------------------------------------------------------------


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

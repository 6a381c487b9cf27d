"""Every image shape the SDK builds, deployed in container mode on the real engine and registry, and a
task run in the result (`flyte-deploy run`: Flyte's runtime `a0` in the deployed image)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.images import POETRY_LOCK, POETRY_PYPROJECT
from tests.fixtures.pipeline import CliResult

pytestmark = pytest.mark.stack

Cli = Callable[..., CliResult]
COMMIT_DATE = "2024-05-06T07:08:09+00:00"


def deploy(flyte_deploy: Cli, repo: Any, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = flyte_deploy("deploy", *args, "--json", cwd=repo.path, env=env)
    assert result.code == 0, result.stderr
    statuses = {e["name"]: e["status"] for e in result.json["deployment"]["environments"]}
    assert set(statuses.values()) <= {"registered", "unchanged"}, statuses
    return dict(result.json)


def run(flyte_deploy: Cli, repo: Any, task: str, *inputs: str) -> Any:
    args = [arg for value in inputs for arg in ("--input", value)]
    result = flyte_deploy("run", task, *args, "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    assert result.json["mode"] == "container", result.json
    return result.json["outputs"]["o0"]


HELLO = """\
import flyte

env = flyte.TaskEnvironment(name="hello")


@env.task
async def greet(name: str) -> str:
    return f"hello {name}"
"""


@pytest.mark.parametrize("mode", ["container", "auto"])
def test_hello_without_an_image_deploys_and_runs_in_flytes_default_image(
    mode: str, make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str]
) -> None:
    repo = make_git_repo(files={"workflows.py": HELLO}, date=COMMIT_DATE)
    report = deploy(flyte_deploy, repo, "workflows.py", "env", "--mode", mode, *stack_deploy_args)
    (planned,) = report["plan"]["environments"]
    assert planned["mode"] == "container"  # auto: a Docker engine answers
    (image,) = report["artifacts"]["images"]
    assert (
        image["built"] and image["pushed"] and "@sha256:" in report["deployment"]["environments"][0]["image"]
    )
    assert run(flyte_deploy, repo, "hello.greet", "name=ada") == "hello ada"


def _wheel(name: str, version: str, module: str) -> bytes:
    """A minimal pure-Python wheel (what `pip wheel` makes for one module)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


EVERY_LAYER = """\
from pathlib import Path

import flyte
from flyte._image import DockerIgnore, PythonWheels, UVScript, _DockerLines

image = (
    flyte.Image.from_debian_base(python_version=(3, 11), name="every")
    .with_apt_packages("jq")
    .with_pip_packages("six==1.16.0")
    .with_requirements(Path("requirements.txt"))
    .clone(addl_layer=PythonWheels(wheel_dir=Path("wheels"), package_name="demo_wheel"))
    .with_uv_project(Path("uvproj/pyproject.toml"))
    .clone(addl_layer=UVScript(script=Path("job.py")))
    .with_poetry_project(Path("poetryproj/pyproject.toml"))
    .clone(addl_layer=DockerIgnore(path="custom.dockerignore"))
    .with_env_vars({"STAGE": "every layer"})
    .with_workdir("/app")
    .with_commands(["echo built > /opt/built.txt"])
    .clone(addl_layer=_DockerLines(("LABEL team=ml",)))
    .with_source_file(Path("data/config.json"), "/etc/svc")
    .with_source_folder(Path("assets"))
)
env = flyte.TaskEnvironment(name="every", image=image)


@env.task
async def inspect() -> str:
    import json, os, subprocess

    import demo_wheel, pyparsing, six, text_unidecode, tomli_w

    config = json.load(open("/etc/svc/config.json"))
    parts = [
        os.getcwd(),
        six.__version__,
        pyparsing.__version__,
        demo_wheel.VALUE,
        text_unidecode.unidecode("caf\\u00e9"),
        tomli_w.dumps({"a": 1}).strip(),
        subprocess.run(["jq", "-n", "1+1"], capture_output=True, text=True).stdout.strip(),
        str(config["ok"]),
        open("/opt/built.txt").read().strip(),
        open("assets/logo.txt").read().strip(),
        str(os.path.exists("assets/skip.tmp")),
        os.environ["STAGE"],
    ]
    return "|".join(parts)
"""

UV_PROJECT = """\
[project]
name = "uvproj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["text-unidecode==1.3"]
"""

UV_SCRIPT = '# /// script\n# dependencies = ["tomli-w==1.0.0"]\n# ///\nprint("job")\n'


def test_from_debian_base_with_every_layer_type_builds_and_runs(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str], docker_client: Any
) -> None:
    files: dict[str, Any] = {
        "workflows.py": EVERY_LAYER,
        "requirements.txt": "pyparsing==3.1.2\n",
        "wheels/demo_wheel-1.0-py3-none-any.whl": _wheel("demo_wheel", "1.0", "VALUE = 'wheel'\n"),
        "uvproj/pyproject.toml": UV_PROJECT,
        "job.py": UV_SCRIPT,
        "poetryproj/pyproject.toml": POETRY_PYPROJECT,
        "poetryproj/poetry.lock": POETRY_LOCK,
        "custom.dockerignore": "*.tmp\n",
        "data/config.json": '{"ok": true}\n',
        "assets/logo.txt": "logo\n",
        "assets/skip.tmp": "ignored\n",
    }
    repo = make_git_repo(files=files, date=COMMIT_DATE)
    report = deploy(flyte_deploy, repo, "workflows.py", "env", "--mode", "container", *stack_deploy_args)
    (image,) = report["artifacts"]["images"]
    assert image["repository"].endswith("/every") and image["built"]
    expected = "/app|1.16.0|3.1.2|wheel|cafe|a = 1|2|True|built|logo|False|every layer"
    assert run(flyte_deploy, repo, "every.inspect") == expected
    pulled = docker_client.images.pull(f"{image['repository']}@{image['digest']}")
    assert pulled.labels["team"] == "ml"


WORKSPACE_ROOT = """\
[project]
name = "monorepo"
version = "0.1.0"
requires-python = ">=3.11"

[tool.uv.workspace]
members = ["packages/*"]
"""
APP = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["corelib", "helper", "text-unidecode==1.3"]

[tool.uv.sources]
corelib = { workspace = true }
helper = { path = "../../libs/helper", editable = true }

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""


def _package(name: str, body: str) -> dict[str, str]:
    pyproject = (
        f'[project]\nname = "{name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    return {"pyproject.toml": pyproject, f"src/{name}/__init__.py": body}


UV_WORKFLOWS = """\
from pathlib import Path

import flyte

image = flyte.Image.from_debian_base(python_version=(3, 11), name="ws").with_uv_project(
    Path("packages/app/pyproject.toml"), project_install_mode="{mode}"
)
env = flyte.TaskEnvironment(name="ws", image=image)


@env.task
async def combine(word: str) -> str:
    import corelib, helper, text_unidecode

    return corelib.core(helper.help(text_unidecode.unidecode(word)))
"""


@pytest.mark.parametrize("mode", ["dependencies_only", "install_project"])
def test_uv_workspace_with_editable_path_dependencies_builds_and_runs(
    mode: str, make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str]
) -> None:
    files = {
        "workflows.py": UV_WORKFLOWS.replace("{mode}", mode),
        "pyproject.toml": WORKSPACE_ROOT,
        "packages/app/pyproject.toml": APP,
        "packages/app/src/app/__init__.py": "",
        **{
            f"packages/corelib/{k}": v
            for k, v in _package("corelib", "def core(s):\n    return f'<{s}>'\n").items()
        },
        **{
            f"libs/helper/{k}": v
            for k, v in _package("helper", "def help(s):\n    return s.upper()\n").items()
        },
    }
    repo = make_git_repo(files=files, date=COMMIT_DATE)
    deploy(flyte_deploy, repo, "workflows.py", "env", "--mode", "container", *stack_deploy_args)
    assert run(flyte_deploy, repo, "ws.combine", "word=caf\u00e9") == "<CAFE>"


DERIVED = """\
import flyte

base = flyte.Image.from_debian_base(python_version=(3, 11), name="svc")
cpu = flyte.TaskEnvironment(name="cpu", image=base.with_env_vars({"KIND": "cpu"}))
gpu = flyte.TaskEnvironment(name="gpu", image=base.with_env_vars({"KIND": "gpu"}))


@cpu.task
async def kind_cpu() -> str:
    import os

    return os.environ["KIND"]


@gpu.task
async def kind_gpu() -> str:
    import os

    return os.environ["KIND"]
"""


def test_one_named_image_derived_twice_shares_the_repository_with_distinct_tags(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str], registry_url: str
) -> None:
    repo = make_git_repo(files={"workflows.py": DERIVED}, date=COMMIT_DATE)
    report = deploy(flyte_deploy, repo, "workflows.py", "--all", "--mode", "container", *stack_deploy_args)
    images = {image["env_name"]: image for image in report["artifacts"]["images"]}
    assert images["cpu"]["repository"] == images["gpu"]["repository"] and images["cpu"][
        "repository"
    ].endswith("/svc")
    assert images["cpu"]["digest"] != images["gpu"]["digest"]
    sha = f"sha-{repo.head_sha[:7]}"
    assert f"{sha}-cpu" in images["cpu"]["tags"] and f"{sha}-gpu" in images["gpu"]["tags"]
    from tests.fixtures.stack import registry_manifest_digest

    path = images["cpu"]["repository"].removeprefix(f"{registry_url}/")
    for env in ("cpu", "gpu"):
        assert registry_manifest_digest(registry_url, path, f"{sha}-{env}") == images[env]["digest"]
    assert run(flyte_deploy, repo, "cpu.kind_cpu") == "cpu"
    assert run(flyte_deploy, repo, "gpu.kind_gpu") == "gpu"


CODE_BUNDLE = """\
import flyte

from lib import word

image = flyte.Image.from_debian_base(python_version=(3, 11)).with_code_bundle(copy_style="all")
env = flyte.TaskEnvironment(name="baked", image=image)


@env.task
async def say() -> str:
    return word()
"""


def test_with_code_bundle_builds_nothing_with_a_bundle_and_bakes_the_code_without_one(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str], docker_client: Any
) -> None:
    files = {"workflows.py": CODE_BUNDLE, "lib.py": "def word():\n    return 'baked'\n"}
    repo = make_git_repo(files=files, date=COMMIT_DATE)
    planned = flyte_deploy("plan", "workflows.py", "env", "--mode", "bundle", "--json", cwd=repo.path)
    assert planned.code == 0, planned.stderr
    (env,) = planned.json["environments"]
    assert env["mode"] == "bundle" and not env["image"]["needs_build"]  # the SDK drops the layer
    bundled = deploy(flyte_deploy, repo, "workflows.py", "env", "--mode", "bundle", *stack_deploy_args)
    assert bundled["artifacts"]["images"] == [] and bundled["artifacts"]["bundle"] is not None
    ours = stack_deploy_args[stack_deploy_args.index("--registry") + 1]
    tags = [tag for image in docker_client.api.images() for tag in image.get("RepoTags") or ()]
    assert not [tag for tag in tags if tag.startswith(ours)]  # no build, not even one adding labels

    args = ("workflows.py", "env", "--copy-style", "none", "--version", "v-baked", "--domain", "baked")
    report = deploy(flyte_deploy, repo, *args, *stack_deploy_args)
    assert report["artifacts"]["bundle"] is None and report["artifacts"]["images"][0]["built"]
    result = flyte_deploy(
        "run", "baked.say", "--domain", "baked", "--version", "v-baked", "--json", cwd=repo.path
    )
    assert result.code == 0, result.stderr
    assert result.json["outputs"]["o0"] == "baked"


CUSTOM = """\
from pathlib import Path

import flyte

dockerfile = Path(__file__).parent / "docker" / "Dockerfile"
image = flyte.Image.from_dockerfile(dockerfile, registry="unused", name="custom")
env = flyte.TaskEnvironment(name="custom", image=image)


@env.task
async def marker() -> str:
    return open("/opt/marker.txt").read().strip()
"""
DOCKERFILE = """\
FROM ghcr.io/flyteorg/flyte:py3.11-v2.12.1
COPY marker.txt /opt/marker.txt
"""


def test_custom_dockerfile_builds_and_runs(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str]
) -> None:
    files = {
        "workflows.py": CUSTOM,
        "docker/Dockerfile": DOCKERFILE,
        "docker/marker.txt": "from the dockerfile\n",
    }
    repo = make_git_repo(files=files, date=COMMIT_DATE)
    report = deploy(flyte_deploy, repo, "workflows.py", "env", "--mode", "container", *stack_deploy_args)
    assert report["artifacts"]["images"][0]["repository"].endswith("/custom")
    assert run(flyte_deploy, repo, "custom.marker") == "from the dockerfile"


REF = """\
import flyte

image = flyte.Image.from_ref_name("gpu").clone(extendable=True).with_pip_packages("six==1.16.0")
env = flyte.TaskEnvironment(name="trainer", image=image)


@env.task
async def fit() -> str:
    import six

    return six.__version__
"""


def test_ref_name_image_with_extra_layers_runs_on_the_mapped_uri(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str], flyte_base_image: str
) -> None:
    repo = make_git_repo(files={"workflows.py": REF}, date=COMMIT_DATE)
    args = ("workflows.py", "env", "--mode", "container", "--image", f"gpu={flyte_base_image}")
    report = deploy(flyte_deploy, repo, *args, *stack_deploy_args)
    assert report["artifacts"]["images"][0]["repository"].endswith("/gpu")
    assert run(flyte_deploy, repo, "trainer.fit") == "1.16.0"


def test_pixi_cannot_be_built_offline_but_renders_as_flyte_does(tmp_path: Path) -> None:
    """pixi comes from ghcr.io/prefix-dev/pixi and conda-forge, neither reachable here: only the
    rendering is checked (the build would need both)."""
    import flyte

    from deployer.images.render import render_image

    (tmp_path / "pixi.toml").write_text(
        '[workspace]\nname = "x"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n'
    )
    image = flyte.Image.from_debian_base(python_version=(3, 11)).with_pixi_project(tmp_path / "pixi.toml")
    rendered = render_image(image, base="ghcr.io/flyteorg/flyte:py3.11-v2.12.1", root_dir=tmp_path)
    assert "--mount=type=cache,target=/root/.cache/rattler" in rendered.buildkit_dockerfile
    assert "pixi install --manifest-path /opt/pixi-project/pixi.toml" in rendered.buildkit_dockerfile

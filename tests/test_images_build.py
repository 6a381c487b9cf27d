"""Real builds on the stack's engine and registry, through the `flyte-deploy build`/`images` CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployer.images.registry import RegistryClient
from tests.fixtures.pipeline import CliResult
from tests.fixtures.stack import registry_manifest_digest

pytestmark = pytest.mark.stack

COMMIT_DATE = "2024-05-06T07:08:09+00:00"

WORKFLOWS = """\
import flyte

from lib.util import helper

image = (
    flyte.Image.from_debian_base(python_version=(3, 11))
    {layers}
)
env = flyte.TaskEnvironment(name="svc", image=image)


@env.task
async def hello(name: str) -> str:
    return helper(name)
"""

SMALL_LAYERS = '.with_env_vars({"GREETING": "hi"})\n    .with_commands(["mkdir -p /opt/marker"])'


def project_files(layers: str = SMALL_LAYERS, helper: str = "hello") -> dict[str, str]:
    return {
        "workflows.py": WORKFLOWS.format(layers=layers),
        "lib/__init__.py": "",
        "lib/util.py": f"def helper(name):\n    return '{helper} ' + name\n",
    }


Cli = Callable[..., CliResult]


@pytest.fixture
def build(flyte_deploy: Cli, stack_deploy_args: list[str]) -> Callable[..., CliResult]:
    """`build(repo, *extra) -> CliResult`: `flyte-deploy build workflows.py env --mode container --json`."""

    def run(repo: Any, *extra: str, command: str = "build") -> CliResult:
        output = () if command == "images" else ("--json",)
        args = (command, "workflows.py", "env", "--mode", "container", *stack_deploy_args, *output, *extra)
        return flyte_deploy(*args, cwd=repo.path, env={"GITHUB_ACTIONS": "", "GITHUB_EVENT_NAME": ""})

    return run


def only_image(result: CliResult) -> dict[str, Any]:
    assert result.code == 0, result.stderr
    images = result.json["images"]
    assert len(images) == 1, images
    return dict(images[0])


def engine_image_ids(docker_client: Any) -> set[str]:
    return {image.id for image in docker_client.images.list(all=True)}


def test_build_pushes_by_digest_and_a_second_run_builds_nothing(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any, registry_url: str
) -> None:
    repo = make_git_repo(files=project_files(), date=COMMIT_DATE)
    first = only_image(build(repo))
    assert first["built"] and first["pushed"]
    repository, identity, digest = first["repository"], first["identity"], first["digest"]
    path = repository.removeprefix(f"{registry_url}/")
    assert repository == repository.lower() and path.endswith("/svc")
    assert first["uri"] == f"{repository}@{digest}"
    sha_tag = f"sha-{repo.head_sha[:7]}"
    assert first["tags"] == [identity, sha_tag]
    assert registry_manifest_digest(registry_url, path, identity) == digest
    assert registry_manifest_digest(registry_url, path, sha_tag) == digest

    # The code layer is appended in the registry: the engine has only the dependency image.
    image = docker_client.images.pull(first["uri"])
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == repo.head_sha
    assert labels["org.opencontainers.image.created"] == COMMIT_DATE
    assert labels["org.opencontainers.image.version"]
    # The code is importable from the working directory, the way Flyte's runtime imports task modules.
    output = docker_client.containers.run(
        first["uri"],
        ["sh", "-c", "python -c 'import workflows, lib.util; print(lib.util.helper(\"x\"))' && a0 --help"],
        remove=True,
    ).decode()
    assert output.startswith("hello x\n") and "Usage: a0" in output
    assert docker_client.containers.run(first["uri"], ["sh", "-c", "echo $GREETING"], remove=True) == b"hi\n"

    before = engine_image_ids(docker_client)
    second = only_image(build(repo))
    assert not second["built"] and second["pushed"]
    assert second["digest"] == digest and second["identity"] == identity
    assert engine_image_ids(docker_client) == before  # nothing was built, not even from cache


def test_source_only_change_rebuilds_only_the_code_layer(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any
) -> None:
    repo = make_git_repo(files=project_files(), date=COMMIT_DATE)
    old = only_image(build(repo))
    repo.commit("change the helper", files={"lib/util.py": "def helper(name):\n    return 'howdy ' + name\n"})
    new = only_image(build(repo))
    assert new["built"] and new["identity"] != old["identity"] and new["digest"] != old["digest"]
    with RegistryClient() as client:
        old_layers = client.get_manifest(old["repository"], old["digest"]).layers  # type: ignore[union-attr]
        new_layers = client.get_manifest(new["repository"], new["digest"]).layers  # type: ignore[union-attr]
    assert len(new_layers) == len(old_layers)
    assert new_layers[:-1] == old_layers[:-1]  # base, env, commands: identical blobs
    assert new_layers[-1] != old_layers[-1]
    output = docker_client.containers.run(
        new["uri"], ["python", "-c", "import lib.util; print(lib.util.helper('x'))"], remove=True
    )
    assert output == b"howdy x\n"


def test_release_tag_on_a_built_commit_retags_without_building(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any, registry_url: str
) -> None:
    repo = make_git_repo(files=project_files(helper="release"), date=COMMIT_DATE)
    built = only_image(build(repo))
    repo.tag("v1.4.2", message="release 1.4.2", date=COMMIT_DATE)
    before = engine_image_ids(docker_client)
    promoted = only_image(build(repo))
    assert not promoted["built"] and promoted["digest"] == built["digest"]
    assert engine_image_ids(docker_client) == before
    path = built["repository"].removeprefix(f"{registry_url}/")
    for tag in ("1.4.2", "1.4", "1", "latest", f"sha-{repo.head_sha[:7]}"):
        assert tag in promoted["tags"]
        assert registry_manifest_digest(registry_url, path, tag) == built["digest"], tag


def test_no_push_and_dry_run_leave_the_registry_untouched(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any
) -> None:
    repo = make_git_repo(files=project_files(helper="local"), date=COMMIT_DATE)
    before = engine_image_ids(docker_client)
    dry = only_image(build(repo, "--dry-run"))
    assert not dry["built"] and not dry["pushed"] and dry["digest"] is None
    assert engine_image_ids(docker_client) == before

    local = only_image(build(repo, "--no-push"))
    assert local["built"] and not local["pushed"] and local["digest"] is None
    assert local["uri"] == f"{local['repository']}:{local['identity']}"
    assert docker_client.images.get(local["uri"]).labels["org.opencontainers.image.revision"] == repo.head_sha
    with RegistryClient() as client:
        assert client.list_tags(local["repository"]) == ()


def test_images_command_prints_the_map_by_digest(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult]
) -> None:
    repo = make_git_repo(files=project_files(helper="map"), date=COMMIT_DATE)
    planned = build(repo, "--dry-run", "--format", "json", command="images")
    assert planned.code == 0, planned.stderr
    (name, uri), *_ = planned.json.items()
    assert name == "svc" and ":build-" in uri and "@" not in uri

    built = build(repo, "--format", "json", command="images")
    assert built.code == 0, built.stderr
    assert list(built.json) == ["svc"] and "@sha256:" in built.json["svc"]
    as_args = build(repo, command="images")
    assert as_args.code == 0, as_args.stderr
    assert as_args.stdout.strip() == f"--image svc={built.json['svc']}"


UV_PROJECT = """\
[project]
name = "uvproj"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["text-unidecode==1.3"]
"""


def test_representative_image_installs_and_runs(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any
) -> None:
    layers = (
        '.with_apt_packages("jq")\n'
        '    .with_pip_packages("six==1.16.0")\n'
        '    .with_requirements("requirements.txt")\n'
        '    .with_uv_project("uvproj/pyproject.toml")\n'
        '    .with_env_vars({"STAGE": "test run"})\n'
        '    .with_workdir("/app")\n'
        '    .with_commands(["echo built > /opt/built.txt"])\n'
        '    .with_source_file(__import__("pathlib").Path("data/config.json"), "/etc/svc")\n'
        '    .with_source_folder(__import__("pathlib").Path("assets"))'
    )
    files = {
        **project_files(layers=layers),
        "requirements.txt": "idna==3.7\n",
        "uvproj/pyproject.toml": UV_PROJECT,
        "data/config.json": '{"ok": true}\n',
        "assets/logo.txt": "logo\n",
    }
    repo = make_git_repo(files=files, date=COMMIT_DATE)
    image = only_image(build(repo))
    assert image["built"]
    script = " && ".join(
        (
            "pwd",
            "python -c 'import six, idna, text_unidecode, workflows, lib.util; "
            "print(six.__version__, idna.__version__)'",
            "jq -r .ok /etc/svc/config.json",
            "cat assets/logo.txt /opt/built.txt",
            'echo "$STAGE"',
            "a0 --help >/dev/null && echo runtime-ok",
        )
    )
    output = docker_client.containers.run(image["uri"], ["sh", "-c", script], remove=True).decode()
    assert output.splitlines() == ["/app", "1.16.0 3.7", "true", "logo", "built", "test run", "runtime-ok"]


def test_failed_build_names_the_failing_step(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult]
) -> None:
    layers = '.with_commands(["echo about to fail && exit 3"])'
    repo = make_git_repo(files=project_files(layers=layers), date=COMMIT_DATE)
    result = build(repo)
    assert result.code != 0
    line = result.error_line
    assert line.startswith("error: image build for svc failed at Step ")
    assert "RUN echo about to fail && exit 3" in line and "non-zero code: 3" in line
    assert "about to fail" in line.split("log tail:")[1]


def ref_image_project() -> dict[str, str]:
    # Flyte 2.12 makes ref images non-extendable: layers go on after clone(extendable=True).
    source = project_files()["workflows.py"].replace(
        "flyte.Image.from_debian_base(python_version=(3, 11))",
        'flyte.Image.from_ref_name("gpu").clone(extendable=True)',
    )
    return {**project_files(), "workflows.py": source}


def test_ref_image_with_layers_builds_on_the_mapped_uri(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], docker_client: Any, registry_url: str
) -> None:
    repo = make_git_repo(files=ref_image_project(), date=COMMIT_DATE)
    mapped = f"{registry_url}/flyteorg/flyte:py3.11-v2.12.1"
    image = only_image(build(repo, "--image", f"gpu={mapped}"))
    assert image["built"] and image["repository"].endswith("/gpu")
    base_layers = docker_client.images.get(mapped).attrs["RootFS"]["Layers"]
    built_layers = docker_client.images.pull(image["uri"]).attrs["RootFS"]["Layers"]
    assert built_layers[: len(base_layers)] == base_layers
    output = docker_client.containers.run(
        image["uri"], ["sh", "-c", "echo $GREETING && ls /opt"], remove=True
    )
    assert output.decode().split() == ["hi", "marker", "venv"]


def test_unmapped_ref_name_fails_listing_the_known_names(
    make_git_repo: Callable[..., Any], build: Callable[..., CliResult], registry_url: str
) -> None:
    repo = make_git_repo(files=ref_image_project(), date=COMMIT_DATE)
    result = build(repo, "--image", f"cpu={registry_url}/flyteorg/flyte:py3.11-v2.12.1")
    assert result.code != 0
    assert result.error_line.startswith("error: ")
    assert "'gpu'" in result.error_line and "--image gpu=URI" in result.error_line
    assert "mapped names: cpu" in result.error_line


MULTI = """\
import flyte

shared = flyte.Image.from_debian_base(python_version=(3, 11)).with_env_vars({"KIND": "shared"})
other = flyte.Image.from_debian_base(python_version=(3, 11)).with_env_vars({"KIND": "other"})
a = flyte.TaskEnvironment(name="a", image=shared)
b = flyte.TaskEnvironment(name="b", image=shared, depends_on=[a])
c = flyte.TaskEnvironment(name="c", image=other)


@a.task
async def one() -> int:
    return 1
"""


def test_identical_images_build_once_and_distinct_ones_concurrently(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str]
) -> None:
    repo = make_git_repo(files={"workflows.py": MULTI}, date=COMMIT_DATE)
    args = ("build", "workflows.py", "--all", "--mode", "container", *stack_deploy_args, "--json")
    result = flyte_deploy(*args, cwd=repo.path, env={"FLYTE_DEPLOY_BUILD_CONCURRENCY": "2"})
    assert result.code == 0, result.stderr
    images = result.json["images"]
    by_env = {image["env_name"]: image for image in images}
    assert set(by_env) == {"a", "b", "c"}
    assert by_env["a"]["digest"] == by_env["b"]["digest"] and by_env["a"]["uri"] == by_env["b"]["uri"]
    assert by_env["a"]["repository"].endswith("/a")  # a shared build is named after its first environment
    assert by_env["c"]["digest"] != by_env["a"]["digest"] and by_env["c"]["repository"].endswith("/c")
    assert all(image["built"] for image in images)


def test_pushing_without_a_registry_is_a_usage_error(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, docker_client: Any
) -> None:
    repo = make_git_repo(files=project_files(helper="noreg"), date=COMMIT_DATE)
    before = engine_image_ids(docker_client)
    result = flyte_deploy("build", "workflows.py", "env", "--mode", "container", cwd=repo.path)
    assert result.code == 2
    assert result.error_line == (
        "error: --registry is required to push the images built for svc (or pass --no-push)"
    )
    assert engine_image_ids(docker_client) == before

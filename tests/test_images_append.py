"""The code layer appended in the registry, and dependency builds on a fresh runner's empty engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployer.images.append import ConfigChange, append_layer
from deployer.images.codelayer import write_code_layer
from deployer.images.registry import DOCKER_LIST, Manifest, RegistryClient
from deployer.images.renderers import CodeFiles
from tests.fixtures.images import empty_engine_cache
from tests.fixtures.pipeline import CliResult

pytestmark = pytest.mark.stack

Cli = Callable[..., CliResult]
COMMIT_DATE = "2024-05-06T07:08:09+00:00"
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}

WORKFLOWS = """\
import flyte

from lib.util import helper

image = (
    flyte.Image.from_debian_base(python_version=(3, 11))
    .with_commands(["echo {marker} && head -c 24 /dev/urandom | base64 > /opt/slow.txt"])
    .with_commands(["echo {dependency} > /opt/dependency.txt"])
)
env = flyte.TaskEnvironment(name="svc", image=image)


@env.task
async def hello(name: str) -> str:
    return helper(name)
"""


def project(marker: str, dependency: str = "v1", word: str = "hello") -> dict[str, str]:
    return {
        "workflows.py": WORKFLOWS.format(marker=marker, dependency=dependency),
        "lib/__init__.py": "",
        "lib/util.py": f"def helper(name):\n    return '{word} ' + name\n",
    }


@pytest.fixture
def build(flyte_deploy: Cli, stack_deploy_args: list[str]) -> Callable[..., dict[str, Any]]:
    def run(repo: Any, env: dict[str, str] | None = None) -> dict[str, Any]:
        args = ("build", "workflows.py", "env", "--mode", "container", *stack_deploy_args, "--json")
        result = flyte_deploy(*args, cwd=repo.path, env={"GITHUB_ACTIONS": "", **(env or {})})
        assert result.code == 0, result.stderr
        (image,) = result.json["images"]
        return dict(image)

    return run


def layers(image: dict[str, Any]) -> tuple[str, ...]:
    with RegistryClient() as client:
        manifest = client.get_manifest(image["repository"], image["digest"])
    assert manifest is not None
    return manifest.layers


def test_source_only_change_deploys_without_any_engine(
    make_git_repo: Callable[..., Any], build: Callable[..., dict[str, Any]], docker_client: Any
) -> None:
    marker = uuid.uuid4().hex
    repo = make_git_repo(files=project(marker), date=COMMIT_DATE)
    first = build(repo)
    repo.commit("change the helper", files={"lib/util.py": "def helper(name):\n    return 'howdy ' + name\n"})
    second = build(repo, env=NO_ENGINE)  # no Docker engine at all: nothing to build
    assert second["built"] and second["pushed"] and second["digest"] != first["digest"]
    old, new = layers(first), layers(second)
    assert new[:-1] == old[:-1] and new[-1] != old[-1]  # the dependency layers are the same blobs
    output = docker_client.containers.run(
        f"{second['repository']}@{second['digest']}",
        [
            "sh",
            "-c",
            "python -c 'import lib.util; print(lib.util.helper(\"x\"))' && a0 --help >/dev/null && pwd",
        ],
        remove=True,
    )
    assert output.decode().split() == ["howdy", "x", "/root"]


def test_one_commit_gives_one_digest_from_two_clones(
    make_git_repo: Callable[..., Any], build: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    origin = make_git_repo(files=project(marker), date=COMMIT_DATE)
    clones = [origin.clone(tmp_path / name) for name in ("checkout-a", "somewhere/else/checkout-b")]
    for clone in clones:
        clone.git("remote", "set-url", "origin", "https://github.com/acme/app.git")
    first = build(clones[0])
    # Forget the image (not its dependency image): the second clone must make it again, by itself.
    with RegistryClient() as client:
        client.delete_tag(first["repository"], first["identity"], delete_shared_manifest=True)
        assert client.manifest_digest(first["repository"], first["identity"]) is None
    second = build(clones[1], env=NO_ENGINE)
    assert second["built"] and second["identity"] == first["identity"]
    assert second["digest"] == first["digest"]


@pytest.mark.parametrize("builder", ["buildkit", "engine"])
def test_changed_dependencies_on_an_empty_engine_reuse_the_registrys_layers(
    builder: str,
    make_git_repo: Callable[..., Any],
    build: Callable[..., dict[str, Any]],
    docker_client: Any,
    stack_deploy_args: list[str],
) -> None:
    marker = uuid.uuid4().hex
    repo = make_git_repo(files=project(marker), date=COMMIT_DATE)
    choose = {"FLYTE_DEPLOY_IMAGE_BUILDER": builder}
    first = build(repo, env=choose)
    # A fresh CI runner: none of this project's images, no build cache for its steps.
    empty_engine_cache(docker_client, stack_deploy_args[stack_deploy_args.index("--registry") + 1], marker)
    repo.commit("bump a dependency", files={"workflows.py": project(marker, dependency="v2")["workflows.py"]})
    second = build(repo, env=choose)
    old, new = layers(first), layers(second)
    # The random slow step was not run again: its layer is the very blob the first build pushed.
    assert len(new) == len(old) and new[:-2] == old[:-2]
    assert new[-2] != old[-2]  # the changed step ran
    output = docker_client.containers.run(
        f"{second['repository']}@{second['digest']}", ["cat", "/opt/dependency.txt"], remove=True
    )
    assert output == b"v2\n"


def test_the_code_layer_is_appended_to_every_platform_of_an_index(
    push_tiny_image: Callable[..., str],
    python_base_image: str,
    registry_url: str,
    unique_repo: str,
    tmp_path: Path,
    docker_client: Any,
) -> None:
    repo = f"{registry_url}/{unique_repo}"
    tiny = push_tiny_image(repo, "arm-stand-in", content="arm")
    with RegistryClient() as client:
        base_repo, _, base_tag = python_base_image.rpartition(":")
        amd = client.get_manifest(base_repo, base_tag)
        arm = client.get_manifest(repo, tiny)
        assert amd is not None and arm is not None
        for digest in [amd.json()["config"]["digest"], *amd.layers]:
            assert client.mount_blob(repo, digest, base_repo)
        client.put_manifest(repo, amd.digest, amd)
        entries = [
            {"mediaType": m.media_type, "digest": m.digest, "size": len(m.body), "platform": platform}
            for m, platform in (
                (amd, {"os": "linux", "architecture": "amd64"}),
                (arm, {"os": "linux", "architecture": "arm64"}),
            )
        ]
        body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
        client.put_manifest(repo, "multi", Manifest("", DOCKER_LIST, body))

        root = tmp_path / "code"
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "mod.py").write_text("VALUE = 'appended'\n")
        code = CodeFiles(root, ("pkg/mod.py",))
        written: list[str] = []

        def layer_for(config: dict[str, Any]) -> Any:
            workdir = (config.get("config") or {}).get("WorkingDir") or "/"
            written.append(workdir)
            return write_code_layer(code, f"{workdir.rstrip('/')}/app", tmp_path / "layers")

        change = ConfigChange(created="2024-05-06T07:08:09Z", created_by="test", labels={"k": "v"})
        digest = append_layer(
            client, base=f"{repo}:multi", target_repo=repo, tag="appended", layer_for=layer_for, change=change
        )
        index = client.get_manifest(repo, "appended")
        assert index is not None and index.digest == digest and index.media_type == DOCKER_LIST
        children = [client.get_manifest(repo, m["digest"]) for m in index.json()["manifests"]]
        assert [m["platform"]["architecture"] for m in index.json()["manifests"]] == ["amd64", "arm64"]
        for child, original in zip(children, (amd, arm), strict=True):
            assert child is not None and child.layers[:-1] == original.layers
            config = json.loads(client.get_blob(repo, child.json()["config"]["digest"]))
            assert config["config"]["Labels"]["k"] == "v" and config["history"][-1]["created_by"] == "test"
            assert len(config["rootfs"]["diff_ids"]) == len(child.layers)
    assert written == ["/", "/"]  # the code goes under each platform's own working directory
    output = docker_client.containers.run(
        f"{repo}:appended",
        ["python", "-c", "import sys; sys.path[:0] = ['/app']; import pkg.mod; print(pkg.mod.VALUE)"],
        remove=True,
    )
    assert output == b"appended\n"  # the engine pulls this machine's platform of the index

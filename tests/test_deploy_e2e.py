"""End to end on the real stack: container-mode deploys (images built on the local Flyte base mirror,
pushed to the local registry, registered by digest), tasks run inside their images, mixed
container/bundle projects, bundles in S3, and README command 1 (`scripts/demo`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployer.controlplane.embedded import EmbeddedControlPlane
from tests.fixtures.pipeline import REPO_ROOT, CliResult
from tests.fixtures.stack import registry_manifest_digest

pytestmark = pytest.mark.stack

# Appended to the example in the test's own copy: which interpreter ran the task.
INTERPRETER_TASK = """

@analysis.task
async def interpreter() -> str:
    import sys

    return sys.executable
"""


def envs_by_name(result: CliResult) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in result.json["deployment"]["environments"]}


def test_container_mode_deploy_run_in_image_and_redeploy(
    hello_repo, flyte_deploy, stack_deploy_args, registry_url, unique_repo
) -> None:
    hello_repo.commit("report the interpreter", files={
        "workflows.py": hello_repo.read("workflows.py") + INTERPRETER_TASK
    })  # fmt: skip
    args = ("deploy", "workflows.py", "analysis", *stack_deploy_args, "--json")
    first = flyte_deploy(*args, cwd=hello_repo.path)
    assert first.code == 0, first.stderr

    report = first.json
    version = report["plan"]["version"]
    assert version == hello_repo.head_sha
    assert {env["mode"] for env in report["plan"]["environments"]} == {"container"}
    assert report["artifacts"]["bundle"] is None  # the code is in the image: nothing uploaded
    images = {image["env_name"]: image for image in report["artifacts"]["images"]}
    assert set(images) == {"prep", "analysis"}
    for image in images.values():
        assert image["pushed"] and image["repository"].startswith(f"{registry_url}/{unique_repo}/")
        repo = image["repository"].removeprefix(f"{registry_url}/")
        assert registry_manifest_digest(registry_url, repo, image["identity"]) == image["digest"]
    envs = envs_by_name(first)
    assert {env["status"] for env in envs.values()} == {"registered"}
    analysis_image = f"{images['analysis']['repository']}@{images['analysis']['digest']}"
    assert envs["analysis"]["image"] == analysis_image

    # Read back through our client: the spec runs the image by digest, with no bundle.
    with EmbeddedControlPlane(hello_repo.path / ".flyte-deploy") as client:
        details = client.get_task("flytesnacks", "development", "", "analysis.greet", version)
    assert details is not None
    container = details.spec.task_template.container
    assert container.image == analysis_image
    assert "--tgz" not in container.args

    greet = flyte_deploy("run", "analysis.greet", "--input", "name=stack", "--json", cwd=hello_repo.path)
    assert greet.code == 0, greet.stderr
    assert greet.json["outputs"] == {"o0": "Hello, STACK!"}
    assert greet.json["mode"] == "container" and greet.json["image"] == analysis_image
    inside = flyte_deploy("run", "analysis.interpreter", cwd=hello_repo.path)
    assert inside.code == 0, inside.stderr
    # The image's interpreter (Flyte's base keeps its venv in /opt/venv), not this test's.
    assert inside.stdout.strip().startswith("/opt/venv/bin/python")
    assert inside.stdout.strip() != sys.executable

    second = flyte_deploy(*args, cwd=hello_repo.path)
    assert second.code == 0, second.stderr
    assert second.json["plan"]["version"] == version
    assert {env["status"] for env in envs_by_name(second).values()} == {"unchanged"}
    assert not any(image["built"] for image in second.json["artifacts"]["images"])
    assert {i["digest"] for i in second.json["artifacts"]["images"]} == {i["digest"] for i in images.values()}


def test_hybrid_project_deploys_and_runs_in_both_modes(project_repo, flyte_deploy, stack_deploy_args) -> None:
    repo = project_repo("hybrid")
    result = flyte_deploy("deploy", "--all", "workflows.py", *stack_deploy_args, "--json", cwd=repo.path)
    assert result.code == 0, result.stderr
    modes = {env["name"]: env["mode"] for env in result.json["plan"]["environments"]}
    assert modes == {"dev": "bundle", "prod": "container"}
    envs = envs_by_name(result)
    assert envs["dev"]["bundle_uri"] == result.json["artifacts"]["bundle"]["uri"]
    assert "@sha256:" in envs["prod"]["image"] and envs["prod"]["bundle_uri"] is None
    # The as-is image of the bundle env is pinned too: its mirrored tag, resolved to today's digest.
    mirrored = "127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1"
    digest = registry_manifest_digest("127.0.0.1:5000", "flyteorg/flyte", "py3.11-v2.12.1")
    assert envs["dev"]["image"] == f"{mirrored}@{digest}"

    prod = flyte_deploy("run", "prod.prod_greet", "--input", "name=ada", "--json", cwd=repo.path)
    assert prod.code == 0, prod.stderr
    assert prod.json["outputs"] == {"o0": "hello ada"} and prod.json["mode"] == "container"
    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    refused = flyte_deploy("run", "prod.prod_greet", "--input", "name=ada", cwd=repo.path, env=no_engine)
    assert refused.code != 0
    assert (
        refused.error_line.startswith("error: the task was deployed in container mode (code in image ")
        and "needs a Docker engine" in refused.error_line
    )
    dev = flyte_deploy("run", "dev.dev_greet", "--input", "name=ada", "--json", cwd=repo.path, env=no_engine)
    assert dev.code == 0, dev.stderr
    assert dev.json["outputs"] == {"o0": "hello ada (dev)"} and dev.json["mode"] == "bundle"


def test_bundle_in_s3_is_downloaded_to_run(
    project_repo, flyte_deploy, stack_env, s3_client, s3_bucket
) -> None:
    repo = project_repo("chain")
    prefix = f"bundles/{repo.head_sha[:12]}-{os.getpid()}"
    env = {"FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]}
    storage = f"s3://{s3_bucket}/{prefix}"
    deployed = flyte_deploy(
        "deploy", "pipeline/viz.py", "viz", "--storage", storage, "--json", cwd=repo.path, env=env
    )
    assert deployed.code == 0, deployed.stderr

    bundle = deployed.json["artifacts"]["bundle"]
    assert bundle["uri"] == f"{storage}/{bundle['digest']}.tar.gz"
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{prefix}/{bundle['digest']}.tar.gz")
    assert head["ContentLength"] == bundle["size"]

    ran = flyte_deploy("run", "prep.load", "--input", "n=4", cwd=repo.path, env=env)
    assert ran.code == 0, ran.stderr
    assert ran.stdout.strip() == "[0, 1, 2, 3]"


def test_demo_script_with_the_stack(tmp_path: Path, registry_url: str, flyte_base_image: str) -> None:
    """README command 1 with the stack's environment loaded: container mode, run in the built image."""
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "demo")],
        env={**os.environ, "FLYTE_DEPLOY_DEMO_VENV": sys.prefix, "FLYTE_DEPLOY_DEMO_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("Hello, FLYTE!")
    assert "container mode" in done.stderr
    assert f"(container mode, in {registry_url}/flyte-deploy-demo/" in done.stderr
    assert done.stderr.count(": unchanged (") == 2  # the second deploy of the same commit


def test_file_in_a_subfolder_imports_its_siblings_in_both_modes(
    make_git_repo, flyte_deploy, stack_deploy_args
) -> None:
    """`flyte deploy sub/workflows.py VAR` from the repo root: the file's folder is an import root
    (its sibling package `hello_lib` imports), locally and at runtime, with the code in a bundle or
    baked into the image."""
    import shutil

    repo = make_git_repo("outer")
    shutil.copytree(
        REPO_ROOT / "examples" / "hello",
        repo.path / "hello",
        ignore=shutil.ignore_patterns("__pycache__", ".flyte-deploy"),
    )
    repo.commit("hello in a subfolder")
    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    bundled = flyte_deploy(
        "deploy", "hello/workflows.py", "analysis", "--domain", "bundled", "--json",
        cwd=repo.path, env=no_engine,
    )  # fmt: skip
    assert bundled.code == 0, bundled.stderr
    assert "hello/hello_lib/text.py" in bundled.json["artifacts"]["bundle"]["files"]
    greet = ("run", "analysis.greet", "-i", "name=ada", "--json")
    ran = flyte_deploy(*greet, "--domain", "bundled", cwd=repo.path, env=no_engine)
    assert ran.code == 0, ran.stderr
    assert ran.json["outputs"] == {"o0": "Hello, ADA!"} and ran.json["mode"] == "bundle"

    baked = flyte_deploy(
        "deploy", "hello/workflows.py", "analysis", "--mode", "container", "--domain", "baked",
        *stack_deploy_args, "--json", cwd=repo.path,
    )  # fmt: skip
    assert baked.code == 0, baked.stderr
    ran = flyte_deploy(*greet, "--domain", "baked", cwd=repo.path)
    assert ran.code == 0, ran.stderr
    assert ran.json["outputs"] == {"o0": "Hello, ADA!"} and ran.json["mode"] == "container"

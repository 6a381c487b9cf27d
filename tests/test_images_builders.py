"""BuildKit's secret mounts and the classic builder's clear refusal; a 1 GB tree in bounded memory."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.pipeline import CliResult

pytestmark = pytest.mark.stack

Cli = Callable[..., CliResult]
SECRET = "s3cr3t-value-for-the-build"

SECRET_PROJECT = """\
import flyte

image = flyte.Image.from_debian_base(python_version=(3, 11)).with_commands(
    ['test "$(printf %s "$BUILD_TOKEN" | sha256sum | cut -c1-16)" = {digest} && echo ok > /opt/secret-ok'],
    secret_mounts=["build_token"],
)
env = flyte.TaskEnvironment(name="svc", image=image)


@env.task
async def hello() -> str:
    return open("/opt/secret-ok").read().strip()
"""


def test_buildkit_mounts_a_secret_for_one_step_and_never_stores_it(
    make_git_repo: Callable[..., Any], flyte_deploy: Cli, stack_deploy_args: list[str], docker_client: Any
) -> None:
    # The step checks the secret's hash: the secret itself appears nowhere but in the environment.
    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    repo = make_git_repo(files={"workflows.py": SECRET_PROJECT.format(digest=digest)})
    args = ("build", "workflows.py", "env", "--mode", "container", *stack_deploy_args, "--json")
    built = flyte_deploy(*args, cwd=repo.path, env={"BUILD_TOKEN": SECRET})
    assert built.code == 0, built.stderr
    (image,) = built.json["images"]
    reference = f"{image['repository']}@{image['digest']}"
    pulled = docker_client.images.pull(reference)
    assert SECRET not in str(pulled.history()) and SECRET not in str(pulled.attrs)
    script = "cat /opt/secret-ok; test -e /run/secrets/build_token && echo leaked; true"
    assert docker_client.containers.run(reference, ["sh", "-c", script], remove=True) == b"ok\n"

    missing = flyte_deploy(*args, cwd=repo.path, env={"FLYTE_DEPLOY_IMAGE_BUILDER": "buildkit"})
    assert missing.code == 0, missing.stderr  # the same image already exists: nothing to mount

    classic = flyte_deploy(*args, "--no-push", cwd=repo.path, env={"FLYTE_DEPLOY_IMAGE_BUILDER": "engine"})
    assert classic.code != 0
    assert classic.error_line.startswith(
        "error: image 'svc': Commands layer uses secret_mounts, which need BuildKit"
    )


def test_a_1gb_file_in_the_tree_is_streamed_in_bounded_memory(
    make_git_repo: Callable[..., Any], stack_deploy_args: list[str], tmp_path: Path
) -> None:
    program = (
        "from pathlib import Path\n\nimport flyte\n\n"
        'image = flyte.Image.from_debian_base(python_version=(3, 11)).with_source_folder(Path("data"))\n'
        'env = flyte.TaskEnvironment(name="big", image=image)\n\n\n'
        "@env.task\nasync def size() -> int:\n    return 0\n"
    )
    repo = make_git_repo(files={"workflows.py": program, "data/small.txt": "x\n"})
    with open(repo.path / "data" / "big.bin", "wb") as big:  # sparse: a GB on disk costs nothing
        big.truncate(1 << 30)
    repo.commit("add a 1 GB file")
    # In the image twice: in the dependency image's build context (with_source_folder) and in the code
    # layer (copy style all). Peak RSS is the deployer's process, as the kernel counts it.
    command = [
        "/usr/bin/time",
        "-f",
        "maxrss_kib=%M",
        sys.executable,
        "-m",
        "deployer",
        "build",
        "workflows.py",
        "env",
        "--mode",
        "container",
        "--copy-style",
        "all",
        *stack_deploy_args,
        "--json",
    ]
    done = subprocess.run(
        command, cwd=repo.path, capture_output=True, text=True, timeout=900, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    peak_kib = int(re.findall(r"maxrss_kib=(\d+)", done.stderr)[-1])
    print(f"peak RSS of `flyte-deploy build` with a 1 GiB file: {peak_kib / 1024:.0f} MiB")
    assert peak_kib <= 200 * 1024

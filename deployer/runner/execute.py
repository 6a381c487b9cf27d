"""Execute a deployed task locally, the way Flyte's backend would start it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from flyteidl2.task.task_definition_pb2 import TaskSpec
from pydantic import BaseModel, ConfigDict

from deployer.errors import RunError
from deployer.runner import action as actions
from deployer.runner.container_files import ContainerFiles
from deployer.runner.io import (
    RawInput,
    check_inputs,
    copy_outputs_out,
    decode_outputs,
    encode_inputs,
    one_line,
    read_error,
)


class TaskRun(BaseModel):
    """The result of `flyte-deploy run`: what ran, where, and what it returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    version: str
    mode: Literal["container", "bundle"]
    image: str
    bundle_uri: str | None = None
    outputs: dict[str, Any]
    """JSON-ready output values keyed by output name (`o0`, `o1`, ...)."""
    run_dir: Path
    """Inputs, outputs, logs (`task.log`) and, in bundle mode, the extracted code."""
    seconds: float


def run_task(
    spec: TaskSpec,
    *,
    version: str,
    inputs: Mapping[str, RawInput | str],
    project: str,
    domain: str,
    org: str,
    state_dir: Path,
    download_dir: Path | None = None,
) -> TaskRun:
    """Run one deployed task: container mode in its image with Docker, bundle mode in a local venv."""
    name = spec.task_template.id.name or spec.short_name
    container = spec.task_template.container
    if not container.args or container.args[0] != "a0":
        raise RunError(f"task {name} does not start Flyte's runtime (a0), so it cannot be run locally")
    check_inputs(spec, inputs)  # bad --input values fail before anything is started
    uri = actions.bundle_uri(container.args)

    action = actions.ActionDir.create(state_dir / "runs")
    action.inputs.write_bytes(encode_inputs(spec, inputs, action.raw_data))
    args = actions.fill_args(container.args, action)
    started = time.monotonic()
    container_env = {kv.key: kv.value for kv in container.env}
    files: ContainerFiles | None = None
    if uri is None:
        from deployer.runner.in_image import run_in_image

        files = ContainerFiles(mounted=action.root, copied=action.root / "container-files")
        env = actions.runtime_env({}, container_env, action, project=project, domain=domain, org=org)
        copy_out = functools.partial(copy_outputs_out, spec, action.outputs, files)
        exit_code = run_in_image(container.image, args, env, action, on_exit=copy_out)
    else:
        from deployer.runner.local_venv import run_locally, runtime_bin_dir, wanted_runtime

        archive = _download_bundle(uri, action.root / "bundle", state_dir)
        python, flyte_version = wanted_runtime(container.image)
        bin_dir = runtime_bin_dir(python, flyte_version, state_dir / "runtimes", log=action.log)
        env = actions.runtime_env(os.environ, container_env, action, project=project, domain=domain, org=org)
        exit_code = run_locally(bin_dir, actions.with_bundle(args, archive), env, action)

    downloads = download_dir or action.root / "downloads"
    outputs = _collect_outputs(spec, name, action, exit_code, downloads, files)
    return TaskRun(
        task=name,
        version=version,
        mode="container" if uri is None else "bundle",
        image=container.image,
        bundle_uri=uri,
        outputs=outputs,
        run_dir=action.root,
        seconds=round(time.monotonic() - started, 3),
    )


def _download_bundle(uri: str, dest: Path, state_dir: Path) -> Path:
    from deployer.storage import open_storage

    dest.mkdir(parents=True, exist_ok=True)
    location, _, filename = uri.rpartition("/")
    if not filename:
        raise RunError(f"the task's code bundle URI {uri} names no file")
    storage = open_storage(location, state_dir=state_dir)
    local = dest / filename
    storage.download(uri, local)
    if not local.is_file():
        raise RunError(f"the task's code bundle {uri} was not downloaded to {local}")
    _check_members(local, dest)
    return local


def _check_members(archive: Path, scratch_parent: Path) -> None:
    """Flyte's runtime unpacks a bundle with `tar`, which writes absolute and escaping links as it
    finds them. Whoever could register a task could point it at any archive: unpack it once with our
    extraction first, which refuses `..`, absolute paths, escaping links and devices, naming the member."""
    import shutil
    import tempfile

    from deployer.bundle import extract_bundle

    scratch = Path(tempfile.mkdtemp(dir=scratch_parent, prefix=".check-"))
    try:
        extract_bundle(archive, scratch / "code")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _collect_outputs(
    spec: TaskSpec,
    name: str,
    action: actions.ActionDir,
    exit_code: int,
    download_dir: Path,
    files: ContainerFiles | None,
) -> dict[str, Any]:
    error_file = action.outputs / "error.pb"
    if error_file.exists():
        code, message = read_error(error_file.read_bytes())
        if str(action.sub_actions) in message:
            raise RunError(
                f"task {name} calls other tasks, which needs a full Flyte backend: "
                "`flyte-deploy run` executes leaf tasks only"
            )
        raise RunError(f"task {name} failed: {one_line(code, message)} (log: {action.log})")
    if exit_code != 0:
        raise RunError(f"task {name}'s runtime exited with code {exit_code}: {_last_log_line(action)}")
    outputs_file = action.outputs / "outputs.pb"
    if not outputs_file.exists():
        if spec.task_template.interface.outputs.variables:
            raise RunError(f"task {name} finished without writing outputs.pb (log: {action.log})")
        return {}
    return decode_outputs(spec, outputs_file.read_bytes(), download_dir, container_files=files)


def _last_log_line(action: actions.ActionDir) -> str:
    if not action.log.exists():
        return "no log"
    lines = [line for line in action.log.read_text(errors="replace").splitlines() if line.strip()]
    return f"{lines[-1].strip()} (log: {action.log})" if lines else f"empty log {action.log}"

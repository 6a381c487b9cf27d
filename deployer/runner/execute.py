"""Execute a deployed task locally, the way Flyte's backend would start it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from flyteidl2.task.task_definition_pb2 import TaskSpec
from pydantic import BaseModel, ConfigDict

from deployer.errors import RunError
from deployer.progress import QUIET, Progress
from deployer.runner import action as actions
from deployer.runner.container import TaskContainer, task_container
from deployer.runner.container_files import ContainerFiles
from deployer.runner.failure import crash_summary, read_failure
from deployer.runner.io import RawInput, check_inputs, copy_outputs_out, decode_outputs, encode_inputs
from deployer.runner.secrets import SECRETS_DIR, SECRETS_DIR_ENV, Secrets


class TaskFailed(RunError):
    """The task's own code failed; `traceback` is its traceback when the runtime recorded one."""

    def __init__(self, message: str, *, traceback: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback


class TaskRun(BaseModel):
    """The result of `flyte-deploy run`: what ran, where, and what it returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    version: str
    mode: Literal["container", "bundle"]
    image: str
    bundle_uri: str | None = None
    pod_container: str | None = None
    """The pod template's primary container that ran, for a pod-template task."""
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
    secrets: Secrets | None = None,
    progress: Progress = QUIET,
    download_dir: Path | None = None,
) -> TaskRun:
    """Run one deployed task: container mode in its image with Docker, bundle mode in a local venv.

    A pod-template task runs its primary container. `secrets` are put where Flyte mounts them; they are
    masked in the log and in every error. A failure of the task's own code is a `TaskFailed`."""
    secrets = secrets or Secrets()
    name = spec.task_template.id.name or spec.short_name
    container = task_container(spec)
    if not container.starts_runtime:
        where = ""
        if container.pod_container:
            where = f" (its pod template's primary container {container.pod_container})"
        raise RunError(f"task {name} does not start Flyte's runtime (a0){where}, so it cannot be run locally")
    check_inputs(spec, inputs)  # bad --input values fail before anything is started
    uri = actions.bundle_uri(container.args)
    _report_pod(name, container, progress)

    action = actions.ActionDir.create(state_dir / "runs")
    action.inputs.write_bytes(encode_inputs(spec, inputs, action.raw_data))
    args = actions.fill_args(container.args, action)
    started = time.monotonic()
    target = {"project": project, "domain": domain, "org": org}
    files: ContainerFiles | None = None
    try:
        if uri is None:
            files = ContainerFiles(mounted=action.root, copied=action.root / "container-files")
            copy_out = functools.partial(copy_outputs_out, spec, action.outputs, files)
            exit_code = _in_image(container, args, action, secrets, target, copy_out)
        else:
            exit_code = _in_local_venv(container, args, uri, action, secrets, target, state_dir, progress)
    finally:
        _mask_run_files(action, secrets)

    downloads = download_dir or action.root / "downloads"
    outputs = _collect_outputs(spec, name, container, action, exit_code, secrets, downloads, files)
    return TaskRun(
        task=name,
        version=version,
        mode="container" if uri is None else "bundle",
        image=container.image,
        bundle_uri=uri,
        pod_container=container.pod_container,
        outputs=outputs,
        run_dir=action.root,
        seconds=round(time.monotonic() - started, 3),
    )


def _in_image(
    container: TaskContainer,
    args: list[str],
    action: actions.ActionDir,
    secrets: Secrets,
    target: dict[str, str],
    on_exit: Callable[[Any], None],
) -> int:
    """Container mode: nothing of the caller's environment, file secrets written into the container;
    `on_exit` copies what the task left in the container's own filesystem before it goes."""
    from deployer.runner.in_image import run_in_image

    injected = secrets.env | ({SECRETS_DIR_ENV: str(SECRETS_DIR)} if secrets.files else {})
    env = actions.runtime_env({}, container.env, action, **target, injected=injected)
    files = {SECRETS_DIR / path: value for path, value in secrets.files.items()}
    return run_in_image(
        container.image, args, env, action, working_dir=container.working_dir, files=files, on_exit=on_exit
    )


def _in_local_venv(
    container: TaskContainer,
    args: list[str],
    uri: str,
    action: actions.ActionDir,
    secrets: Secrets,
    target: dict[str, str],
    state_dir: Path,
    progress: Progress,
) -> int:
    """Bundle mode: the downloaded bundle in a runtime of the image's Python and flyte release."""
    from deployer.runner.local_venv import run_locally, runtime_bin_dir, wanted_runtime

    archive = _download_bundle(uri, action.root / "bundle", state_dir)
    python, flyte_version = wanted_runtime(container.image)
    runtimes = state_dir / "runtimes"
    bin_dir = runtime_bin_dir(python, flyte_version, runtimes, log=action.log, progress=progress)
    with secrets.local_dir(action.root) as secrets_dir:
        injected = secrets.env | ({SECRETS_DIR_ENV: str(secrets_dir)} if secrets_dir else {})
        env = actions.runtime_env(os.environ, container.env, action, **target, injected=injected)
        return run_locally(bin_dir, actions.with_bundle(args, archive), env, action)


def _report_pod(task: str, container: TaskContainer, progress: Progress) -> None:
    if container.not_started:
        progress.warning(
            f"task {task}: runs its pod template's primary container {container.pod_container} only; "
            f"not started locally: {', '.join(container.not_started)}"
        )
    if container.unset_env:
        progress.warning(
            f"task {task}: its pod template's env {', '.join(container.unset_env)} comes from the cluster "
            "and is not set locally"
        )


def _mask_run_files(action: actions.ActionDir, secrets: Secrets) -> None:
    """Whatever the task printed or raised, the log and error.pb we keep never hold a secret's value."""
    if not secrets.values:
        return
    if action.log.exists():
        text = action.log.read_text(errors="replace")
        if secrets.mask(text) != text:
            action.log.write_text(secrets.mask(text))
    error_file = action.outputs / "error.pb"
    if error_file.exists():
        from flyteidl2.core import execution_pb2

        document = execution_pb2.ErrorDocument()
        try:
            document.ParseFromString(error_file.read_bytes())
        except Exception:  # unreadable: reported as such when the outcome is read; keep none of it
            error_file.write_bytes(b"")
            return
        masked = secrets.mask(document.error.message)
        if masked != document.error.message:
            document.error.message = masked
            error_file.write_bytes(document.SerializeToString())


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
    container: TaskContainer,
    action: actions.ActionDir,
    exit_code: int,
    secrets: Secrets,
    download_dir: Path,
    files: ContainerFiles | None,
) -> dict[str, Any]:
    bundled = files is None
    log = action.log.read_text(errors="replace") if action.log.exists() else ""
    error_file = action.outputs / "error.pb"
    if error_file.exists():
        failure = read_failure(error_file.read_bytes(), log)
        if str(action.sub_actions) in failure.message:
            raise RunError(
                f"task {name} calls other tasks, which needs a full Flyte backend: "
                "`flyte-deploy run` executes leaf tasks only"
            )
        summary = failure.summary
        module = actions.task_module(container.args)
        missing = failure.missing_module
        if missing and module and (module == missing or module.startswith(f"{missing}.")):
            where = "code bundle" if bundled else f"image {container.image}"
            summary += f": the task's {where} does not hold its module {module}"
        traceback = secrets.mask(failure.traceback) if failure.traceback else None
        message = f"task {name} failed: {secrets.mask(summary)} (log: {action.log})"
        raise TaskFailed(message, traceback=traceback)
    if exit_code != 0:
        reason = crash_summary(log) or _last_log_line(log)
        raise RunError(
            f"task {name}'s runtime exited with code {exit_code}: {secrets.mask(reason)} (log: {action.log})"
        )
    outputs_file = action.outputs / "outputs.pb"
    if not outputs_file.exists():
        if spec.task_template.interface.outputs.variables:
            raise RunError(f"task {name} finished without writing outputs.pb (log: {action.log})")
        return {}
    return decode_outputs(spec, outputs_file.read_bytes(), download_dir, container_files=files)


def _last_log_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no log"

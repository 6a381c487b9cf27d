"""Tasks → flyteidl2 `TaskSpec`, through the flyte SDK's own serializer, exactly as `flyte deploy` does.

`flyte deploy` (flyte/_deploy.py, `_deploy_task`) serializes each task with
`translate_task_to_wire(task, SerializationContext(...), default_inputs=..., task_context=...)` and
then adds the environment description, the documentation entity (docstring + source link) and the
docstring descriptions of inputs and outputs. Before that it sets `_F_SYS_PATH` on the task so the
runtime can re-add the project's import roots. We do the same steps with the same SDK functions.
Two inputs are made deterministic where flyte reads process state:
- the image lookup `{env name: image URI}` is sorted by env name (it is gzipped into `--image-cache`);
- `_F_SYS_PATH` comes from an explicit `sys_paths` (default: root_dir) instead of whatever
  `sys.path` holds in this process, and is deduplicated (flyte repeats an entry as often as it
  appears in `sys.path`).

A deploy serializes each task once, before images are built or the bundle uploaded, with placeholder
image and bundle references (`placeholder_image`, `PLACEHOLDER_BUNDLE`); `fill_references` then puts the
real ones in (the image of each task, the `--image-cache` lookup, the `--tgz` bundle), which gives the
same bytes as serializing with the real references (a test holds us to it). flyte's serializer reads the
images and the bundle only to write those strings.

These are internal SDK APIs, reached through `deployer.sdk` (which `sdk_internals_check()` covers).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import flyte
from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer import sdk
from deployer.controlplane.sync import one_line, run_coroutine
from deployer.errors import DeployError, PlanError


def task_specs(
    env: flyte.TaskEnvironment,
    *,
    version: str,
    project: str,
    domain: str,
    org: str,
    root_dir: Path,
    image_uri: str,
    bundle_uri: str | None,
    bundle_digest: str | None,
    image_lookup: Mapping[str, str] | None = None,
    sys_paths: Sequence[Path] | None = None,
) -> list[TaskSpec]:
    """Every task of `env` as the `TaskSpec` `flyte deploy` would send, in definition order.

    Args:
        image_uri: the image this environment's tasks run in (by digest).
        bundle_uri / bundle_digest: the uploaded code bundle (bundle mode); None in container mode,
            where the code is in the image and no `--tgz` argument is emitted.
        image_lookup: images of the other environments of the deploy, so a task that calls into a
            dependency resolves that environment's image at runtime (flyte ships one merged cache).
        sys_paths: import roots the task module needs at runtime, mirrored as `_F_SYS_PATH` (those
            under `root_dir` are kept, relative to it, deduplicated). Default: `root_dir` alone,
            which is what `flyte deploy` records for a file at the root. flyte reads the deploying
            process's `sys.path` instead, which varies with how the process was started.
    """
    sdk.sdk_internals_check()
    from flyte.models import CodeBundle, SerializationContext

    root_dir = Path(root_dir).resolve()
    lookup = dict(sorted({**(image_lookup or {}), env.name: image_uri}.items()))
    code_bundle = None
    if bundle_uri is not None:
        code_bundle = CodeBundle(tgz=bundle_uri, destination=".", computed_version=bundle_digest or "")
    context = SerializationContext(
        version=version,
        project=project,
        domain=domain,
        org=org,
        code_bundle=code_bundle,
        image_cache=sdk.image_cache(lookup),
        root_dir=root_dir,
    )
    sys_path_env = _sys_path_env(root_dir, sys_paths)
    tasks = [_with_env_vars(task, sys_path_env) for task in env.tasks.values()]
    defaults = run_coroutine(_default_inputs(env.name, tasks))
    specs = []
    with sdk.git_status_once():
        for task, default_inputs in zip(tasks, defaults, strict=True):
            try:
                specs.append(_serialize(task, context, default_inputs))
            except DeployError:
                raise
            except Exception as exc:
                raise _task_error(env.name, task, exc) from exc
    return specs


async def _default_inputs(env_name: str, tasks: Sequence[Any]) -> list[Any]:
    """Every task's default inputs, in one event loop (a loop per task costs more than the conversion)."""
    found = []
    for task in tasks:
        try:
            found.append(await sdk.upload_default_inputs(task.interface))
        except DeployError:
            raise
        except Exception as exc:
            raise _task_error(env_name, task, exc) from exc
    return found


def _task_error(env_name: str, task: Any, exc: BaseException) -> PlanError:
    return PlanError(
        f"cannot serialize task {task.name} of environment {env_name}: {one_line(exc)}",
        file=str(task.source_file) if getattr(task, "source_file", None) else None,
    )


# ---------------------------------------------------------------------------------------------- references

PLACEHOLDER_BUNDLE = "flyte-deploy.invalid/placeholder/bundle.tar.gz"


def placeholder_image(index: int) -> str:
    """A unique image reference that cannot occur in a real spec, filled in by `fill_references`."""
    return f"flyte-deploy.invalid/placeholder/{index}:image"


def image_cache_transport(lookup: Mapping[str, str]) -> str:
    """The `--image-cache` argument flyte writes for this {env name: image} lookup."""
    return str(sdk.image_cache(dict(sorted(lookup.items()))).to_transport)


def fill_references(specs: Sequence[TaskSpec], replacements: Mapping[str, str]) -> list[TaskSpec]:
    """Copies of `specs` with every occurrence of each key of `replacements` (a placeholder) replaced, in
    every string field at any depth (container image and args, pod specs, metadata)."""
    filled = []
    for spec in specs:
        copy_ = TaskSpec()
        copy_.CopyFrom(spec)
        _replace_strings(copy_, replacements)
        filled.append(copy_)
    return filled


def _replace_strings(message: Any, replacements: Mapping[str, str]) -> None:
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                new = [_replaced(v, replacements) for v in value]
                if new != list(value):
                    del value[:]
                    value.extend(new)
            else:
                new_value = _replaced(value, replacements)
                if new_value != value:
                    setattr(message, field.name, new_value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    for item in value.values():
                        _replace_strings(item, replacements)
                elif value_field.type == FieldDescriptor.TYPE_STRING:
                    for key in list(value):
                        value[key] = _replaced(value[key], replacements)
            elif field.is_repeated:
                for item in value:
                    _replace_strings(item, replacements)
            else:
                _replace_strings(value, replacements)


def _replaced(text: str, replacements: Mapping[str, str]) -> str:
    if "flyte-deploy.invalid/placeholder/" not in text and text not in replacements:
        return text
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _serialize(task: Any, context: Any, default_inputs: list[Any]) -> TaskSpec:
    import flyte.report
    from flyte.models import ActionID, RawDataPath, TaskContext

    # Log links are rendered against the backend's template variables, as flyte deploy does.
    action = ActionID(
        name="{{.actionName}}",
        run_name="{{.runName}}",
        project="{{.executionProject}}",
        domain="{{.executionDomain}}",
        org="{{.executionOrg}}",
    )
    task_context = TaskContext(
        action=action,
        output_path=context.output_path,
        version=context.version,
        raw_data_path=RawDataPath(path=""),
        compiled_image_cache=context.image_cache,
        run_base_dir="",
        report=flyte.report.Report(name=action.name),
        custom_context={},
    )
    spec = sdk.translate_task_to_wire(task, context, default_inputs=default_inputs, task_context=task_context)
    parent = task.parent_env() if task.parent_env else None
    if parent is not None and parent.description:
        spec.environment.description = parent.description
    with _quiet_flyte_git_warnings():
        spec.documentation.CopyFrom(sdk.documentation_entity(task))
    interface = sdk.interface_with_docstrings(spec.task_template.interface, task.native_interface)
    spec.task_template.interface.CopyFrom(interface)
    return spec


@contextlib.contextmanager
def _quiet_flyte_git_warnings() -> Iterator[None]:
    """The source link is optional; outside a git checkout, or without a remote, flyte warns once
    per task, which would bury our own output."""
    logger = sdk.sdk_logger()

    def not_git_noise(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    logger.addFilter(not_git_noise)
    try:
        yield
    finally:
        logger.removeFilter(not_git_noise)


def _sys_path_env(root_dir: Path, sys_paths: Sequence[Path] | None) -> dict[str, str]:
    relative: list[str] = []
    for path in (root_dir,) if sys_paths is None else sys_paths:
        absolute = Path(path).resolve()
        if not absolute.is_relative_to(root_dir):
            continue
        entry = f"./{absolute.relative_to(root_dir)}"
        if entry not in relative:
            relative.append(entry)
    return {sdk.sys_path_variable(): ":".join(relative)}


def _with_env_vars(task: Any, extra: Mapping[str, str]) -> Any:
    # A copy, as flyte does: the user's task object stays as they defined it.
    clone = copy.copy(task)
    clone.env_vars = {**(task.env_vars or {}), **extra}
    return clone

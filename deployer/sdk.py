"""The one home of the flyte SDK's private API in flyte-deploy.

flyte-deploy reads the user's objects and serializes them with the SDK's own code, exactly as `flyte
deploy` does; some of that code is internal to the SDK. Every private name we use is imported here (and
nowhere else), and `sdk_internals_check()` fails with one line naming what moved when an SDK release
changes one of them. `pyproject.toml` pins flyte to one minor line for the same reason.

Heavy internals are imported when first used, so planning and `--help` stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import flyte
from flyte._environment import _ENVIRONMENT_REGISTRY
from flyte._image import _DEFAULT_IMAGE_REF_NAME as DEFAULT_IMAGE_REF_NAME
from flyte._image import (
    AptPackages,
    CodeBundleLayer,
    Commands,
    CopyConfig,
    DockerIgnore,
    Env,
    Layer,
    PipOption,
    PipPackages,
    PixiProject,
    PixiScript,
    PoetryProject,
    PythonWheels,
    Requirements,
    UVProject,
    UVScript,
    WorkDir,
)
from flyte._image import _DockerLines as DockerLines
from flyte._initialize import _InitConfig, init_config_context

from deployer.errors import DeployError

SUPPORTED_FLYTE = "2.12"

__all__ = [
    "DEFAULT_IMAGE_REF_NAME",
    "IMAGE_LAYERS",
    "AptPackages",
    "CodeBundleLayer",
    "Commands",
    "CopyConfig",
    "DockerIgnore",
    "DockerLines",
    "Env",
    "Layer",
    "PipOption",
    "PipPackages",
    "PixiProject",
    "PixiScript",
    "PoetryProject",
    "PythonWheels",
    "Requirements",
    "SdkInternalsChanged",
    "UVProject",
    "UVScript",
    "WorkDir",
    "capture_environments",
    "declaring_file",
    "documentation_entity",
    "ignored_walk",
    "image_cache",
    "interface_with_docstrings",
    "pixi_defaults",
    "sdk_internals_check",
    "sdk_logger",
    "standard_ignore_patterns",
    "sys_path_variable",
    "translate_task_to_wire",
    "upload_default_inputs",
    "uv_script_header",
]


class SdkInternalsChanged(DeployError):
    """The installed flyte SDK no longer has the internal API shape flyte-deploy uses."""


# ---------------------------------------------------------------------------------------------- discovery


@contextlib.contextmanager
def capture_environments(
    root_dir: Path, *, project: str, domain: str, org: str
) -> Iterator[list[flyte.Environment]]:
    """While inside, `flyte.current_project()`/`current_domain()` answer from the arguments (as under
    `flyte deploy`); on exit the yielded list holds every environment created inside, and they are
    taken out of flyte's global registry again, so the next discovery in this process starts clean."""
    created: list[flyte.Environment] = []
    before = len(_ENVIRONMENT_REGISTRY)
    config = init_config_context(
        _InitConfig(root_dir=root_dir, project=project, domain=domain, org=org or None)
    )
    config.__enter__()
    try:
        yield created
    finally:
        config.__exit__(None, None, None)
        created.extend(_ENVIRONMENT_REGISTRY[before:])
        del _ENVIRONMENT_REGISTRY[before:]


def declaring_file(env: Any) -> Path | None:
    """The file whose import created `env` (flyte records it when the environment is constructed)."""
    declared = getattr(env, "_declaring_file", None)
    return Path(declared) if declared else None


# ---------------------------------------------------------------------------------------------- images

IMAGE_LAYERS: tuple[type[Layer], ...] = (
    AptPackages,
    CodeBundleLayer,
    Commands,
    CopyConfig,
    DockerIgnore,
    Env,
    PipPackages,
    PixiProject,
    PixiScript,
    PoetryProject,
    PythonWheels,
    Requirements,
    UVProject,
    UVScript,
    WorkDir,
    DockerLines,
)
"""The `flyte.Image` layer types of the pinned SDK (the images stage renders each)."""


def ignored_walk(patterns: Sequence[str], root: Path) -> list[str]:
    """Files under `root` (relative paths) that `.dockerignore`-style `patterns` keep, as Flyte's image
    builder walks a build context."""
    from flyte._internal.imagebuild.docker import PatternMatcher

    matcher: Any = PatternMatcher(list(patterns))  # type: ignore[no-untyped-call]
    return [str(rel) for rel in matcher.walk(str(root))]


def standard_ignore_patterns() -> list[str]:
    """What Flyte leaves out of every image context and bundle (caches, VCS folders, ...)."""
    from flyte._code_bundle._ignore import STANDARD_IGNORE_PATTERNS

    return list(STANDARD_IGNORE_PATTERNS)


def uv_script_header(script: Path) -> Any:
    """The PEP 723 header of a `uv` script (`dependencies`, `pyprojects`), as Flyte reads it."""
    from flyte._utils import parse_uv_script_file

    return parse_uv_script_file(script)


def pixi_defaults() -> tuple[str, str]:
    """(the project dir in the image, the pixi version) Flyte's builder uses for pixi layers."""
    from flyte._internal.imagebuild.utils import PIXI_PROJECT_DIR, PIXI_VERSION

    return str(PIXI_PROJECT_DIR), str(PIXI_VERSION)


# ---------------------------------------------------------------------------------------------- serialization


def image_cache(lookup: dict[str, str]) -> Any:
    """The `ImageCache` flyte serializes into `--image-cache`: {environment name: image URI}."""
    from flyte._internal.image_cache import ImageCache

    cache = ImageCache(image_lookup=lookup)
    # flyte encodes the cache again for every task unless the encoding is already there.
    cache.serialized_form = cache.to_transport
    return cache


def upload_default_inputs(interface: Any) -> Any:
    """Coroutine: the task's default inputs as flyte sends them with the spec."""
    from flyte._internal.runtime.convert import convert_upload_default_inputs

    return convert_upload_default_inputs(interface)


def translate_task_to_wire(task: Any, context: Any, *, default_inputs: Any, task_context: Any) -> Any:
    from flyte._internal.runtime.task_serde import translate_task_to_wire as translate

    return translate(task, context, default_inputs=default_inputs, task_context=task_context)


def documentation_entity(task: Any) -> Any:
    """The spec's documentation: docstring descriptions and the source link."""
    from flyte._deploy import _get_documentation_entity

    return _get_documentation_entity(task)


def interface_with_docstrings(typed_interface: Any, native_interface: Any) -> Any:
    """The typed interface with input/output descriptions from the docstring, as `flyte deploy` adds."""
    from flyte._deploy import _update_interface_inputs_and_outputs_docstring

    return _update_interface_inputs_and_outputs_docstring(typed_interface, native_interface)


def to_task_trigger(
    trigger: Any, *, task_name: str, task_inputs: Any, task_default_inputs: list[Any]
) -> Coroutine[Any, Any, Any]:
    """Coroutine: a `flyte.Trigger` as the `TaskTrigger` `flyte deploy` sends with its task."""
    from flyte._internal.runtime.trigger_serde import to_task_trigger as serialize

    return serialize(
        t=trigger, task_name=task_name, task_inputs=task_inputs, task_default_inputs=task_default_inputs
    )


def translate_app_env(app_env: Any, context: Any) -> Coroutine[Any, Any, Any]:
    """Coroutine: an `AppEnvironment` as the flyteidl2 `App` `flyte deploy` creates."""
    from flyte.app._runtime import translate_app_env_to_idl

    return cast(Coroutine[Any, Any, Any], translate_app_env_to_idl.aio(app_env, context))


def app_has_delayed_parameters(app_env: Any) -> list[str]:
    """Names of the app's parameters whose value is read from the control plane at deploy time
    (`RunOutput`, `ArtifactValue`): the SDK resolves them through its own client."""
    from flyte.app._parameter import _DelayedValue

    return [p.name for p in getattr(app_env, "parameters", None) or () if isinstance(p.value, _DelayedValue)]


def app_serves_from_bundle(app_env: Any) -> bool:
    """Whether flyte's `fserve` must load the app from the code bundle to start it: it serves the
    `@server` function of the app it loads, and loads apps only from a bundle (flyte/_bin/serve.py);
    an app with `args` or `command` runs that command instead."""
    return (
        getattr(app_env, "_server", None) is not None
        and getattr(app_env, "args", None) is None
        and getattr(app_env, "command", None) is None
    )


def sys_path_variable() -> str:
    """The environment variable through which the runtime re-adds the project's import roots."""
    from flyte._constants import FLYTE_SYS_PATH

    return str(FLYTE_SYS_PATH)


def sdk_logger() -> logging.Logger:
    from flyte._logging import logger

    return logger


@contextlib.contextmanager
def git_status_once() -> Iterator[None]:
    """While inside, flyte's `GitStatus.from_current_repo()` (the source link of every task's documentation,
    six `git` processes per call) is computed once and reused: a deploy reads one checkout at one commit."""
    from flyte.git import _config as git_config

    status_class = git_config.GitStatus
    original = status_class.__dict__["from_current_repo"]
    if getattr(original, "_flyte_deploy_once", False):  # an outer `git_status_once` is in charge
        yield
        return
    cached: list[Any] = []

    def once(cls: Any) -> Any:
        if not cached:
            cached.append(original.__func__(cls))
        return cached[0]

    patched = classmethod(once)
    patched._flyte_deploy_once = True  # type: ignore[attr-defined]
    status_class.from_current_repo = patched  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        status_class.from_current_repo = original  # type: ignore[method-assign]


def git_source_identity() -> str:
    """What the source links in task specs are made of (remote, commit, clean tree), as one string."""
    from flyte.git import GitStatus

    logger = sdk_logger()

    def not_git_noise(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    logger.addFilter(not_git_noise)
    try:
        status = GitStatus.from_current_repo()
    finally:
        logger.removeFilter(not_git_noise)
    return (
        f"{status.is_valid}|{status.remote_url}|{status.commit_sha}|{status.is_tree_clean}|{status.repo_dir}"
    )


# ------------------------------------------------------------------------------------------ the control plane


def create_session_config(endpoint: str, *, auth_endpoint: str | None = None, **kwargs: Any) -> Any:
    """Coroutine: the SDK's session (TLS transport, auth interceptors) for `endpoint`, as `flyte` makes it."""
    from flyte.remote._client.auth._session import create_session_config as create

    return create(endpoint, None, auth_endpoint=auth_endpoint, **kwargs)


def decode_api_key(api_key: str) -> tuple[str, str, str, str | None] | None:
    """A Flyte API key's (endpoint, client id, client secret, org), as the SDK reads it; None when `api_key`
    is not one (org None when the key names none)."""
    from flyte.remote._client.auth._auth_utils import decode_api_key as decode

    try:
        endpoint, client_id, client_secret, org = decode(api_key)
    except (ValueError, UnicodeDecodeError):
        return None
    return endpoint, client_id, client_secret, (None if org == "None" else org)


def org_from_endpoint(endpoint: str | None) -> str | None:
    """The org the SDK assumes for an endpoint when none is configured (the first DNS label)."""
    from flyte._utils import org_from_endpoint as derive

    return derive(endpoint)


def sanitize_endpoint(endpoint: str) -> str:
    from flyte._utils import sanitize_endpoint as sanitize

    return str(sanitize(endpoint))


# ---------------------------------------------------------------------------------------------- the check


@functools.cache
def sdk_internals_check() -> None:
    """Fail with one clear line if the installed flyte no longer has the internals we call."""
    problems = _internals_problems()
    if problems:
        raise SdkInternalsChanged(
            f"flyte {flyte.__version__} is not compatible with flyte-deploy (built for flyte "
            f"{SUPPORTED_FLYTE}.x): {'; '.join(problems)}; install flyte>={SUPPORTED_FLYTE}.1,<2.13"
        )


def _internals_problems() -> list[str]:
    problems: list[str] = []
    if not str(flyte.__version__).startswith(SUPPORTED_FLYTE + "."):
        problems.append(f"version {flyte.__version__} is outside {SUPPORTED_FLYTE}.x")

    def need(module: str, attr: str) -> Any:
        try:
            mod = __import__(module, fromlist=[attr])
            return getattr(mod, attr)
        except (ImportError, AttributeError):
            problems.append(f"{module}.{attr} is missing")
            return None

    def params(func: Any, where: str, names: Sequence[str]) -> None:
        if func is None:
            return
        have = inspect.signature(func).parameters
        missing = [n for n in names if n not in have]
        if missing:
            problems.append(f"{where} has no parameter {', '.join(missing)}")

    def fields(cls: Any, where: str, names: Sequence[str]) -> None:
        if cls is None:
            return
        have = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        have |= set(getattr(cls, "model_fields", {}))
        missing = [n for n in names if n not in have]
        if missing:
            problems.append(f"{where} has no field {', '.join(missing)}")

    for check in _CHECKS:
        check(need, params, fields, problems)
    return problems


Need = Callable[[str, str], Any]
Params = Callable[[Any, str, Sequence[str]], None]
Fields = Callable[[Any, str, Sequence[str]], None]


def _discovery_internals(need: Need, params: Params, fields: Fields, problems: list[str]) -> None:
    if not isinstance(need("flyte._environment", "_ENVIRONMENT_REGISTRY"), list):
        problems.append("flyte._environment._ENVIRONMENT_REGISTRY is no longer a list")
    fields(need("flyte._initialize", "_InitConfig"), "_InitConfig", ["root_dir", "project", "domain", "org"])
    need("flyte._initialize", "init_config_context")
    fields(
        flyte.Environment, "flyte.Environment", ["name", "depends_on", "image", "include", "_declaring_file"]
    )


def _serialization_internals(need: Need, params: Params, fields: Fields, problems: list[str]) -> None:
    serde = "flyte._internal.runtime.task_serde"
    params(
        need(serde, "translate_task_to_wire"),
        f"{serde}.translate_task_to_wire",
        ["task", "serialization_context", "default_inputs", "task_context"],
    )
    fields(
        need("flyte.models", "SerializationContext"),
        "flyte.models.SerializationContext",
        ["version", "project", "domain", "org", "code_bundle", "image_cache", "root_dir"],
    )
    fields(
        need("flyte.models", "CodeBundle"),
        "flyte.models.CodeBundle",
        ["computed_version", "destination", "tgz"],
    )
    fields(
        need("flyte.models", "TaskContext"),
        "flyte.models.TaskContext",
        [
            "action",
            "output_path",
            "version",
            "raw_data_path",
            "compiled_image_cache",
            "run_base_dir",
            "report",
        ],
    )
    fields(
        need("flyte.models", "ActionID"), "flyte.models.ActionID", ["name", "run_name", "project", "domain"]
    )
    fields(need("flyte.models", "RawDataPath"), "flyte.models.RawDataPath", ["path"])
    fields(need("flyte._internal.image_cache", "ImageCache"), "ImageCache", ["image_lookup"])
    params(
        need("flyte._internal.runtime.convert", "convert_upload_default_inputs"),
        "convert_upload_default_inputs",
        ["interface"],
    )
    params(need("flyte._deploy", "_get_documentation_entity"), "_get_documentation_entity", ["task_template"])
    params(
        need("flyte._deploy", "_update_interface_inputs_and_outputs_docstring"),
        "_update_interface_inputs_and_outputs_docstring",
        ["typed_interface", "native_interface"],
    )
    if need("flyte._constants", "FLYTE_SYS_PATH") not in (None, "_F_SYS_PATH"):
        problems.append("flyte._constants.FLYTE_SYS_PATH is no longer _F_SYS_PATH")
    need("flyte._logging", "logger")
    if not isinstance(getattr(flyte.TaskEnvironment, "tasks", None), property):
        problems.append("flyte.TaskEnvironment.tasks is no longer a property")
    task_template = need("flyte._task", "TaskTemplate")
    fields(task_template, "flyte._task.TaskTemplate", ["name", "env_vars", "parent_env", "parent_env_name"])


def _trigger_and_app_internals(need: Need, params: Params, fields: Fields, problems: list[str]) -> None:
    params(
        need("flyte._internal.runtime.trigger_serde", "to_task_trigger"),
        "trigger_serde.to_task_trigger",
        ["t", "task_name", "task_inputs", "task_default_inputs"],
    )
    translate = need("flyte.app._runtime", "translate_app_env_to_idl")
    if translate is not None and not hasattr(translate, "aio"):
        problems.append("flyte.app._runtime.translate_app_env_to_idl is no longer syncified (.aio)")
    need("flyte.app._parameter", "_DelayedValue")
    # restart_background_loop: the loop behind every `.aio` call, restarted in a forked child.
    background = getattr(need("flyte.syncify", "syncify"), "_bg_loop", None)
    if not isinstance(getattr(background, "thread", None), threading.Thread):
        problems.append("flyte.syncify.syncify._bg_loop.thread is no longer the loop's thread")
    else:
        params(need("flyte.syncify._api", "_BackgroundLoop"), "flyte.syncify._api._BackgroundLoop", ["name"])
    fields(
        need("flyte.app", "AppEnvironment"),
        "flyte.app.AppEnvironment",
        [
            "name",
            "image",
            "env_vars",
            "parameters",
            "depends_on",
            "args",
            "command",
            "_caller_frame",
            "_server",
        ],
    )


def _image_internals(need: Need, params: Params, fields: Fields, problems: list[str]) -> None:
    for name in ("_DEFAULT_IMAGE_REF_NAME", "_DockerLines", "Layer"):
        need("flyte._image", name)
    params(need("flyte._internal.imagebuild.docker", "PatternMatcher"), "PatternMatcher", ["patterns"])
    need("flyte._code_bundle._ignore", "STANDARD_IGNORE_PATTERNS")
    params(need("flyte._utils", "parse_uv_script_file"), "parse_uv_script_file", ["path"])
    need("flyte._internal.imagebuild.utils", "PIXI_PROJECT_DIR")
    need("flyte._internal.imagebuild.utils", "PIXI_VERSION")
    fields(flyte.Image, "flyte.Image", ["base_image", "dockerfile", "platform", "python_version", "_layers"])


def _remote_internals(need: Need, params: Params, fields: Fields, problems: list[str]) -> None:
    session = "flyte.remote._client.auth._session"
    params(
        need(session, "create_session_config"),
        f"{session}.create_session_config",
        ["endpoint", "api_key", "insecure", "insecure_skip_verify", "ca_cert_file_path", "auth_endpoint"],
    )
    fields(
        need(session, "SessionConfig"),
        f"{session}.SessionConfig",
        ["endpoint", "interceptors", "http_client"],
    )
    params(need("flyte.remote._client.auth._auth_utils", "decode_api_key"), "decode_api_key", ["encoded_str"])
    need("flyte._utils", "org_from_endpoint")
    need("flyte._utils", "sanitize_endpoint")
    status = need("flyte.git._config", "GitStatus")
    if status is not None and not isinstance(status.__dict__.get("from_current_repo"), classmethod):
        problems.append("flyte.git._config.GitStatus.from_current_repo is no longer a classmethod")


_CHECKS: list[Callable[[Need, Params, Fields, list[str]], None]] = [
    _discovery_internals,
    _serialization_internals,
    _trigger_and_app_internals,
    _image_internals,
    _remote_internals,
]


def restart_background_loop() -> None:
    """In a forked child: give the SDK's sync-over-async loop a thread again. The loop thread starts
    when `flyte` is imported; a fork copies the loop but not its thread, so every `.aio` call the SDK
    makes in the child (app translation among them) would wait forever. Re-initialised in place: every
    function the SDK wrapped holds this very object."""
    syncify = sys.modules.get("flyte.syncify")
    if syncify is None:
        return
    background = syncify.syncify._bg_loop
    if not background.thread.is_alive():
        background.__init__(name=background.thread.name)

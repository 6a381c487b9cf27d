"""App environments → flyteidl2 `App`, through the flyte SDK's own translation, as `flyte deploy` does
(flyte/app/_deploy.py, `_deploy_app`): `translate_app_env_to_idl(app_env, SerializationContext(...))`, then
the container image taken from the image cache by the environment's name.

The same inputs as for tasks (`serialize.task_specs`): version, project/domain/org, the code bundle in
bundle mode (`--tgz`; none in container mode, where the code is in the image), an image cache holding
every environment of the deploy (sorted), and `_F_SYS_PATH` from explicit import roots instead of this
process's `sys.path`. Then ours: the app's name as planned (the preview suffix) and a label naming the
version that deployed it.

Apps whose parameters are read from the control plane at deploy time (`RunOutput`, `ArtifactValue`) are
refused with a clear error: the SDK resolves them through its own initialized client.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flyteidl2.app.app_definition_pb2 import App

from deployer import sdk
from deployer.apps import VERSION_LABEL
from deployer.controlplane.sync import one_line, run_coroutine
from deployer.errors import DeployError, PlanError


def app_spec(
    env: Any,
    *,
    name: str,
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
) -> App:
    """The `App` `flyte deploy` would create for `env`, named `name`, labelled with `version`."""
    sdk.sdk_internals_check()
    from flyte.models import CodeBundle, SerializationContext

    delayed = sdk.app_has_delayed_parameters(env)
    if delayed:
        raise PlanError(
            f"app {env.name}: parameter {', '.join(delayed)} is read from the control plane when flyte "
            "deploys it (RunOutput or ArtifactValue), which flyte-deploy does not do yet: pass the value "
            "itself, or deploy this app with `flyte deploy`",
            file=_declared(env),
        )
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
    try:
        with _quiet_sdk(), _env_vars(env, _sys_path_env(root_dir, sys_paths)):
            app: App = run_coroutine(sdk.translate_app_env(env, context))
    except DeployError:
        raise
    except Exception as exc:
        raise PlanError(f"cannot serialize app {env.name}: {one_line(exc)}", file=_declared(env)) from exc
    if app.spec.HasField("container") and env.name in lookup:
        app.spec.container.image = lookup[env.name]
    app.metadata.id.name = name
    app.metadata.labels[VERSION_LABEL] = version
    return app


@contextlib.contextmanager
def _env_vars(env: Any, extra: Mapping[str, str]) -> Iterator[None]:
    """`extra` added to the environment's variables while it is translated. Not on a copy: the SDK names
    the app's module variable by finding this very object in the module (`extract_app_env_module`), and
    a copy would be mistaken for the module's first app. Put back as the user defined it afterwards."""
    before = env.env_vars
    env.env_vars = {**(before or {}), **extra}
    try:
        yield
    finally:
        env.env_vars = before


def _sys_path_env(root_dir: Path, sys_paths: Sequence[Path] | None) -> dict[str, str]:
    relative: list[str] = []
    for path in (root_dir,) if sys_paths is None else sys_paths:
        absolute = Path(path).resolve()
        if absolute.is_relative_to(root_dir):
            entry = f"./{absolute.relative_to(root_dir)}"
            if entry not in relative:
                relative.append(entry)
    return {sdk.sys_path_variable(): ":".join(relative)}


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK prints the app's version to stdout while building its command (which would corrupt
    `--json` output) and warns when the project is not a git checkout with a remote."""
    logger = sdk.sdk_logger()

    def not_noise(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    logger.addFilter(not_noise)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.removeFilter(not_noise)


def _declared(env: Any) -> str | None:
    file = sdk.declaring_file(env)
    return str(file) if file else None

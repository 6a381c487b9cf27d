"""`flyte-deploy run ENV.TASK`: execute a deployed task locally, the way Flyte would start it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.errors import UsageError
from deployer.request import DeployRequest

TaskArg = Annotated[str, typer.Argument(help="Deployed task as ENV.TASK, e.g. analysis.greet.")]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        help="NAME=VALUE task input, read by the input's type: strings, numbers and true/false bare; "
        "ISO 8601 datetimes (2024-01-02T03:04:05) and durations (PT2H, or seconds); enum names; "
        "a local path or storage URI for File/Dir; JSON for lists, dicts, dataclasses and models. "
        "Repeatable; overrides --input-file.",
    ),
]
InputFileOpt = Annotated[
    Path | None,
    typer.Option("--input-file", help="JSON or YAML file mapping input names to values."),
]
DownloadDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--download-dir", help="Where File/Dir outputs are copied (DIR/OUTPUT/NAME). Default: the run's dir."
    ),
]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret",
        "-s",
        help="A secret the task asks for (flyte.Secret key, GROUP/KEY when grouped): NAME=VALUE, "
        "NAME=env:VAR (read from the variable VAR), or NAME alone (read from the variable NAME, else the "
        "one the task reads). Mounted as Flyte does: env var or file in /etc/flyte/secrets. Repeatable.",
        show_default=False,
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="When the task fails, print its traceback too.")
]


@o.uses_request(fields=o.RUN_FIELDS, docs=o.RUN_DOCS)
def command(
    request: DeployRequest,
    task: TaskArg,
    inputs: InputOpt = None,
    input_file: InputFileOpt = None,
    secrets: SecretOpt = None,
    download_dir: DownloadDirOpt = None,
    verbose: VerboseOpt = False,
    as_json: o.JsonOpt = False,
) -> None:
    """Run a deployed task: in its image with Docker (container mode), or in a local virtualenv
    with its code bundle (bundle mode). Prints its outputs. A pod-template task runs its primary
    container. Leaf tasks only: a task that calls other tasks needs a full Flyte backend."""
    from deployer import output
    from deployer.runner import TaskFailed, fetch_spec, run_task
    from deployer.runner.io import parse_inputs
    from deployer.runner.secrets import parse_secret_flags, resolve_secrets

    env_name, dot, task_name = task.partition(".")
    if not dot or not env_name or not task_name:
        raise UsageError(f"task {task!r}: expected ENV.TASK, e.g. analysis.greet")
    raw_inputs = parse_inputs(inputs or [], input_file)
    given_secrets = parse_secret_flags(secrets or [])
    settings = request.settings
    spec, found_version = fetch_spec(task, version=settings.version, settings=settings)
    try:
        result = run_task(
            spec,
            version=found_version,
            inputs=raw_inputs,
            project=settings.project,
            domain=settings.domain,
            org=settings.org,
            state_dir=settings.state,
            secrets=resolve_secrets(spec, given_secrets),
            progress=output.ConsoleProgress(show_bars=settings.progress),
            download_dir=download_dir.resolve() if download_dir else None,
        )
    except TaskFailed as exc:
        if verbose and exc.traceback:
            output.emit_task_traceback(exc.traceback)
        raise
    output.emit_task_run(result, as_json=as_json)

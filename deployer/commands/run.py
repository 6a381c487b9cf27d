"""`flyte-deploy run ENV.TASK`: execute a deployed task locally, the way Flyte would start it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deployer.commands import options as o
from deployer.errors import RunError, UsageError

TaskArg = Annotated[str, typer.Argument(help="Deployed task as ENV.TASK, e.g. analysis.greet.")]
RunVersionOpt = Annotated[
    str | None, typer.Option("--version", help="Deployed version. Default: the newest deployed version.")
]
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
RunRootDirOpt = Annotated[
    Path | None,
    typer.Option("--root-dir", help="Project root; the state dir defaults to ROOT_DIR/.flyte-deploy."),
]


def command(
    task: TaskArg,
    version: RunVersionOpt = None,
    inputs: InputOpt = None,
    input_file: InputFileOpt = None,
    download_dir: DownloadDirOpt = None,
    project: o.ProjectOpt = "flytesnacks",
    domain: o.DomainOpt = "development",
    org: o.OrgOpt = "",
    endpoint: o.EndpointOpt = None,
    insecure: o.InsecureOpt = False,
    api_key: o.ApiKeyOpt = None,
    root_dir: RunRootDirOpt = None,
    state_dir: o.StateDirOpt = None,
    as_json: o.JsonOpt = False,
) -> None:
    """Run a deployed task: in its image with Docker (container mode), or in a local virtualenv
    with its code bundle (bundle mode). Prints its outputs. Leaf tasks only: a task that calls
    other tasks needs a full Flyte backend."""
    from deployer import output
    from deployer.runner import fetch_spec, run_task
    from deployer.runner.io import parse_inputs

    env_name, dot, task_name = task.partition(".")
    if not dot or not env_name or not task_name:
        raise UsageError(f"task {task!r}: expected ENV.TASK, e.g. analysis.greet")
    raw_inputs = parse_inputs(inputs or [], input_file)
    state = (state_dir or (root_dir or Path.cwd()) / ".flyte-deploy").resolve()
    if endpoint is None and not state.is_dir():
        raise RunError(
            f"nothing is deployed in {state} (no embedded control plane state): deploy first, "
            "or pass --state-dir/--endpoint"
        )
    spec, found_version = fetch_spec(
        task,
        version=version,
        project=project,
        domain=domain,
        org=org,
        endpoint=endpoint,
        insecure=insecure,
        api_key=api_key,
        state_dir=state,
    )
    result = run_task(
        spec,
        version=found_version,
        inputs=raw_inputs,
        project=project,
        domain=domain,
        org=org,
        state_dir=state,
        download_dir=download_dir.resolve() if download_dir else None,
    )
    output.emit_task_run(result, as_json=as_json)

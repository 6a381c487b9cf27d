"""Human vs JSON output, chosen in one place.

Results go to stdout (a rich table for people, one JSON document with `--json`); progress and
warnings go to stderr so `--json` output stays machine-readable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from deployer.models import EnvDeployment, Report

if TYPE_CHECKING:
    from deployer.runner import TaskRun


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _console() -> Console:
    # Wide enough that digests are never wrapped mid-token when output is piped (CI logs).
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200, soft_wrap=False)


SpecsByEnv = Mapping[str, Sequence[dict[str, Any]]]


def emit_report(report: Report, *, as_json: bool, specs: SpecsByEnv | None = None) -> None:
    """A deploy's (or dry run's) summary. `specs`: the JSON form of every TaskSpec a dry run would
    send, keyed by environment."""
    if as_json:
        document = json.loads(report.model_dump_json())
        if specs is not None:
            document["task_specs"] = {env: list(items) for env, items in specs.items()}
        print(json.dumps(document, indent=2))
        return
    if report.deployment is not None and report.deployment.dry_run:
        _emit_dry_run(report, specs or {})
        return
    console = _console()
    deployment = report.deployment
    plan = report.plan
    title = f"{plan.project}/{plan.domain}"
    if deployment is not None:
        title += f" · {deployment.endpoint}"
    table = Table(title=title, title_justify="left")
    for column in ("environment", "tasks", "code in", "version", "status"):
        table.add_column(column, overflow="fold")
    for env in deployment.environments if deployment is not None else ():
        table.add_row(env.name, "\n".join(env.tasks), _where(env), plan.version, _status(env))
    console.print(table)
    bundle = report.artifacts.bundle
    if bundle is not None and bundle.uri:
        state = "reused" if bundle.reused else "uploaded"
        console.print(f"bundle: {bundle.uri} ({state}, {bundle.size} bytes)", highlight=False)
    _emit_timings(console, report)


def _emit_dry_run(report: Report, specs: SpecsByEnv) -> None:
    from deployer.commands.plan import print_plan

    print_plan(report.plan)
    console = _console()
    for env_name, items in specs.items():
        for spec in items:
            name = spec.get("task_template", {}).get("id", {}).get("name", env_name)
            console.print(f"\n[bold]{name}[/bold]: TaskSpec that would be sent", highlight=False)
            console.print_json(json.dumps(spec))
    console.print("\ndry run: nothing was built, pushed, uploaded or registered", highlight=False)
    _emit_timings(console, report)


def _emit_timings(console: Console, report: Report) -> None:
    if report.timings:
        spent = ", ".join(f"{t.stage} {t.seconds:.1f}s" for t in report.timings)
        console.print(f"time: {spent}", highlight=False)


def _where(env: EnvDeployment) -> str:
    """Container mode: the image by digest. Bundle mode: the bundle's digest, and the image it runs in."""
    if env.bundle_uri:
        digest = env.bundle_uri.rsplit("/", 1)[-1].removesuffix(".tar.gz")
        return f"bundle {digest[:12]}" + (f" on {env.image}" if env.image else "")
    return env.image or ""


def _status(env: EnvDeployment) -> str:
    if env.status == "failed" and env.error:
        return f"failed: {env.error}"
    return env.status


def emit_task_run(run: TaskRun, *, as_json: bool) -> None:
    """A task's outputs: the bare value for a single output, `name = value` lines otherwise."""
    if as_json:
        print(run.model_dump_json(indent=2))
        return
    where = f"in {run.image}" if run.mode == "container" else "in a local virtualenv"
    progress(f"ran {run.task}@{run.version} ({run.mode} mode, {where}) in {run.seconds:.1f}s")
    if len(run.outputs) == 1:
        print(_plain(next(iter(run.outputs.values()))))
        return
    for name, value in run.outputs.items():
        print(f"{name} = {json.dumps(value)}")


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""Everything the CLI shows, in one place: results on stdout (a table for people, one JSON document with
`--json`), progress and warnings on stderr, so `--json` output stays machine-readable.

Every `--json` document is an object that starts with `schema_version` and `kind`; the rest of its keys
are the result's own. A change that removes or renames a key bumps `SCHEMA_VERSION`.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr
from rich.console import Console
from rich.table import Table

from deployer.models import BuiltImage, BundleArtifact, EnvDeployment, Plan, Report, VersionInfo
from deployer.progress import Advance
from deployer.settings import Settings, options

if TYPE_CHECKING:
    from deployer.report.models import CleanupResult
    from deployer.runner import TaskRun

SCHEMA_VERSION = 1

SpecsByEnv = Mapping[str, Sequence[dict[str, Any]]]


# ---------------------------------------------------------------------------------------------- progress


class ConsoleProgress:
    """`Progress` on stderr: plain lines, and rich bars for long transfers when stderr is a terminal
    (or `show_bars`)."""

    def __init__(self, *, show_bars: bool | None = None) -> None:
        self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._bars = self._console.is_terminal if show_bars is None else show_bars

    def info(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Advance]:
        if not self._bars:
            yield lambda _n: None
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TransferSpeedColumn

        columns = (
            (label, BarColumn(), DownloadColumn(), TransferSpeedColumn())
            if total is not None
            else (SpinnerColumn(), label)
        )
        # On a terminal the bar disappears when done; in a CI log its final state stays as a record.
        with Progress(*columns, console=self._console, transient=self._console.is_terminal) as bars:
            task = bars.add_task(label, total=total)
            yield lambda n: bars.advance(task, n)


# ---------------------------------------------------------------------------------------------- JSON


def emit_json(kind: str, payload: BaseModel | Mapping[str, Any]) -> None:
    """One `--json` document: `{"schema_version": 1, "kind": KIND, ...payload}`."""
    body = json.loads(payload.model_dump_json()) if isinstance(payload, BaseModel) else dict(payload)
    print(json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, **body}, indent=2))


def _console() -> Console:
    # Wide enough that digests are never wrapped mid-token when output is piped (CI logs).
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200, soft_wrap=False)


# ---------------------------------------------------------------------------------------------- results


def emit_plan(plan: Plan, *, as_json: bool) -> None:
    if as_json:
        emit_json("plan", plan)
        return
    console = _console()
    git = plan.git
    where = f"sha {git.sha[:12]}" if git.sha else "no git commit"
    if git.pr is not None:
        where += f" · PR #{git.pr}"
    if git.dirty:
        where += " · dirty"
    release = " · release" if plan.release else ""
    title = f"{plan.project}/{plan.domain} · version {plan.version} · {where}{release}"
    table = Table(title=title, title_justify="left")
    for column in ("#", "environment", "depends on", "tasks", "image", "mode"):
        table.add_column(column, overflow="fold")
    for index, env in enumerate(plan.environments, start=1):
        if env.image.uri:
            image = env.image.uri
        elif env.image.base:
            image = f"build on {env.image.base}"
        else:
            image = f"build {env.image.spec_id[:12]}"
        table.add_row(
            str(index),
            env.name,
            ", ".join(env.depends_on) or "-",
            f"app {env.app.name}" if env.app else "\n".join(env.tasks) or "-",
            image,
            f"{env.mode}: {env.mode_reason}",
        )
    console.print(table)
    _emit_triggers(console, [t for env in plan.environments for t in env.triggers], plan.trigger_policy.value)
    if plan.bundle is None:
        console.print("bundle: none (--copy-style none)", highlight=False)
    else:
        digest = (plan.bundle.digest or "")[:12]
        count = len(plan.bundle.files)
        console.print(
            f"bundle: {plan.bundle.copy_style.value}, {count} file{'s' * (count != 1)}, sha256 {digest}",
            highlight=False,
        )
    console.print(f"image tags: {', '.join(plan.image_tags)}", highlight=False)


def emit_version(info: VersionInfo, *, as_json: bool) -> None:
    if as_json:
        emit_json("version", info)
        return
    print(info.version)
    print(f"image tags: {', '.join(info.image_tags)}")
    flags = [name for name, on in (("release", info.release), ("dirty", info.dirty)) if on]
    if info.pr is not None:
        flags.append(f"PR #{info.pr}")
    if flags:
        print(", ".join(flags))


def emit_bundle(artifact: BundleArtifact, *, copy_style: str, root_dir: Path, as_json: bool) -> None:
    if as_json:
        emit_json(
            "bundle",
            {
                "digest": artifact.digest,
                "size": artifact.size,
                "files": list(artifact.files),
                "copy_style": copy_style,
                "root_dir": str(root_dir),
                "path": str(artifact.path.resolve()),
            },
        )
        return
    count = len(artifact.files)
    print(f"{artifact.path}")
    print(
        f"sha256 {artifact.digest} · {artifact.size} bytes · {count} file{'s' * (count != 1)} "
        f"· copy style {copy_style} · root {root_dir}"
    )


def emit_images(images: Sequence[BuiltImage], *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        emit_json("images", {"images": [{**i.model_dump(mode="json"), "uri": i.uri} for i in images]})
        return
    if not images:
        print("no environment needs an image build", file=sys.stderr)
        return
    table = Table(title="images" + (" · dry run" if dry_run else ""), title_justify="left")
    for column in ("environment", "image", "tags", "status"):
        table.add_column(column, overflow="fold")
    for image in images:
        table.add_row(image.env_name, image.uri, ", ".join(image.tags) or "-", _image_status(image, dry_run))
    _console().print(table)


def emit_image_map(mapping: Mapping[str, str], *, as_args: bool) -> None:
    """`images --format args|json`: input for `flyte deploy`, so plain, without the envelope."""
    if as_args:
        print(" ".join(f"--image {shlex.quote(f'{name}={uri}')}" for name, uri in mapping.items()))
    else:
        print(json.dumps(dict(mapping), indent=2))


def emit_report(
    report: Report,
    *,
    as_json: bool,
    specs: SpecsByEnv | None = None,
    triggers: SpecsByEnv | None = None,
    apps: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """A deploy's (or dry run's) summary. `specs`: the JSON form of every TaskSpec a dry run would
    send, keyed by environment; `triggers`: of every TaskTrigger, keyed by task; `apps`: of every App,
    keyed by environment."""
    if as_json:
        document = json.loads(report.model_dump_json())
        if specs is not None:
            document["task_specs"] = {env: list(items) for env, items in specs.items()}
        if triggers is not None:
            document["task_triggers"] = {task: list(items) for task, items in triggers.items()}
        if apps is not None:
            document["app_specs"] = dict(apps)
        emit_json("deploy", document)
        return
    if report.deployment is not None and report.deployment.dry_run:
        _emit_dry_run(report, specs or {}, apps or {})
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
        tasks = (
            f"app {env.app.name}" + (f"\n{env.app.url}" if env.app.url else "")
            if env.app
            else "\n".join(env.tasks)
        )
        table.add_row(env.name, tasks, _where(env), plan.version, _status(env))
    console.print(table)
    if deployment is not None:
        _emit_triggers(console, [t for env in deployment.environments for t in env.triggers], None)
        for env in deployment.environments:
            for removed in env.removed_triggers:
                console.print(f"trigger {removed}: removed (no longer in the code)", highlight=False)
    bundle = report.artifacts.bundle
    if bundle is not None and bundle.uri:
        state = "reused" if bundle.reused else "uploaded"
        console.print(f"bundle: {bundle.uri} ({state}, {bundle.size} bytes)", highlight=False)
    _emit_timings(console, report)


def emit_cleanup(result: CleanupResult, *, as_json: bool) -> None:
    if as_json:
        emit_json("preview-cleanup", result)
        return
    lines = [
        *(f"deleted {t}" for t in result.removed_tags),
        *(f"already gone {t}" for t in result.missing_tags),
        *(f"deleted trigger {t}" for t in result.removed_triggers),
        *(f"deleted app {a}" for a in result.removed_apps),
        f"versions on {result.control_plane} kept (it has no delete)"
        if result.versions_kept
        else f"{result.removed_tasks} task version(s) removed from the {result.control_plane} control plane",
    ]
    for line in lines:
        print(line)


def emit_text(text: str) -> None:
    print(text)


def emit_settings(settings: Settings, *, as_json: bool) -> None:
    """`flyte-deploy config`: each option's current value; secrets show only whether they are set."""
    values = {info.name: _setting_value(getattr(settings, info.name)) for info in options()}
    if as_json:
        emit_json("config", values)
        return
    table = Table(title="flyte-deploy options", title_justify="left")
    for column in ("option", "flag", "variable", "value"):
        table.add_column(column, overflow="fold")
    for info in options():
        table.add_row(info.name, info.flag or "-", info.env[0], json.dumps(values[info.name]))
    _console().print(table)


def _setting_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return getattr(value, "value", value)


def emit_task_run(run: TaskRun, *, as_json: bool) -> None:
    """A task's outputs: the bare value for a single output, `name = value` lines otherwise."""
    if as_json:
        emit_json("run", run)
        return
    where = f"in {run.image}" if run.mode == "container" else "in a local virtualenv"
    if run.pod_container:
        where += f", pod template container {run.pod_container}"
    print(f"ran {run.task}@{run.version} ({run.mode} mode, {where}) in {run.seconds:.1f}s", file=sys.stderr)
    if len(run.outputs) == 1:
        print(_plain(next(iter(run.outputs.values()))))
        return
    for name, value in run.outputs.items():
        print(f"{name} = {json.dumps(value)}")


def emit_task_traceback(traceback: str) -> None:
    """`run --verbose`: the failed task's traceback, on stderr before the one-line error."""
    print(traceback.rstrip(), file=sys.stderr)


# ---------------------------------------------------------------------------------------------- pieces


def _emit_dry_run(report: Report, specs: SpecsByEnv, apps: Mapping[str, dict[str, Any]]) -> None:
    emit_plan(report.plan, as_json=False)
    console = _console()
    for env_name, items in specs.items():
        for spec in items:
            name = spec.get("task_template", {}).get("id", {}).get("name", env_name)
            console.print(f"\n[bold]{name}[/bold]: TaskSpec that would be sent", highlight=False)
            console.print_json(json.dumps(spec))
    for env_name, app in apps.items():
        console.print(f"\n[bold]{env_name}[/bold]: App that would be created or updated", highlight=False)
        console.print_json(json.dumps(app))
    console.print("\ndry run: nothing was built, pushed, uploaded or registered", highlight=False)
    _emit_timings(console, report)


def _emit_triggers(console: Console, triggers: Sequence[Any], policy: str | None) -> None:
    if not triggers:
        return
    title = "triggers" + (f" · policy {policy}" if policy else "")
    table = Table(title=title, title_justify="left")
    for column in ("task", "trigger", "schedule", "active"):
        table.add_column(column, overflow="fold")
    for t in triggers:
        table.add_row(t.task, t.name, t.schedule, "active" if t.active else "inactive")
    console.print(table)


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


def _image_status(image: BuiltImage, dry_run: bool) -> str:
    if dry_run:
        return "exists" if image.digest else "would build"
    if image.built:
        return "built, pushed" if image.pushed else "built (not pushed)"
    if image.pushed:
        return "reused, tagged"
    return "exists in registry" if image.digest else "reused local image"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

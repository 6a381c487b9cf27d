"""One run of the action: inputs and event → the same pipeline as the CLI → outputs, summary, GitHub.

Exit codes: 0 for a deploy, a build-only run, a cleanup or a skipped event; the error's own code
(1, or 2 for bad inputs) when the run fails, after an `::error` annotation and a summary saying why.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from deployer.errors import ControlPlaneError, DeployError, UsageError
from deployer.models import Report
from deployer.redact import url_secrets
from deployer.report.github import GitHubReporter, GitHubSettings
from deployer.report.models import CleanupResult, RunInfo, RunKind
from deployer.report.preview import finish_cleanup, finish_preview, recorded_preview, start_preview
from deployer.report.render import summary_markdown
from deployer.request import DeployRequest
from deployer.settings import Settings
from deployer.supervise import Finished
from entrypoint.events import Decision, decide
from entrypoint.github_env import ActionProgress, GitHubEnv
from entrypoint.inputs import (
    ActionInputs,
    input_env_key,
    preview_prefix,
    read_inputs,
    to_request,
    unknown_inputs,
)
from entrypoint.workspace import left_as_found

SECRET_INPUTS = ("registry_password", "api_key", "github_token")


def main(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    return ActionRun(env, GitHubEnv(env, stream)).run()


def supervised_run(work: Callable[[], int]) -> Finished:
    """`work` in a supervised child (`deployer.supervise`): the action's process cannot be ended by
    imported user code without a word."""
    from deployer.settings import load_settings, option_info
    from deployer.supervise import supervised

    try:
        timeout = load_settings().import_timeout
    except DeployError:
        timeout = float(Settings.model_fields["import_timeout"].default)  # the run itself reports it
    return supervised(work, import_timeout_s=timeout, timeout_setting=option_info("import_timeout").env[0])


def ended_early(problem: str) -> None:
    """The run's child ended without reporting: the annotation, outputs and summary it could not write."""
    gh = GitHubEnv(os.environ)
    gh.error(problem, title="flyte-deploy: the run ended early")
    gh.set_outputs({"deployed": "false"})
    run = RunInfo(kind=RunKind.skipped, event=os.environ.get("GITHUB_EVENT_NAME"), error=problem)
    gh.append_summary(summary_markdown(run))


class ActionRun:
    def __init__(self, environ: dict[str, str], gh: GitHubEnv) -> None:
        self.env = environ
        self.gh = gh
        self.workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
        self.run_info: RunInfo | None = None
        self.warnings: list[str] = []
        self.progress: ActionProgress = gh.progress()

    # ------------------------------------------------------------------ top level
    def run(self) -> int:
        from deployer.settings import environment

        # Settings read deeper down (storage, images) come from this run's variables too.
        with environment(self.env), left_as_found(self.workspace):
            return self._run()

    def _run(self) -> int:
        # Masks go out before anything else is printed, even before the inputs are validated.
        for field in SECRET_INPUTS:
            self.gh.mask(self.env.get(input_env_key(field), "").strip())
        for secret in url_secrets(self.env.get(input_env_key("endpoint"), "")):
            self.gh.mask(secret)
        try:
            with self.gh.group("flyte-deploy: inputs and trigger"):
                inputs = read_inputs(self.env)
                for name in unknown_inputs(self.env):
                    self.warn(f"unknown input `{name}` is ignored")
                self._trust_workspace()
                decision = decide(
                    self.env.get("GITHUB_EVENT_NAME"), self._event(), self.env, push=inputs.push != "false"
                )
                self.run_info = self._run_info(decision)
                self._log(
                    f"trigger: {decision.kind.value}" + (f" ({decision.note})" if decision.note else "")
                )
            if decision.kind is RunKind.skipped:
                return self._skipped(decision)
            if decision.kind is RunKind.cleanup:
                return self._cleanup(inputs, decision)
            if decision.kind is RunKind.build_only:
                return self._build_only(inputs, decision)
            return self._deploy(inputs, decision)
        except DeployError as exc:
            return self._failed(exc)
        except Exception as exc:  # a bug: still one annotation, plus the traceback in the log
            traceback.print_exc()
            return self._failed(DeployError(f"internal error: {type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ triggers
    def _skipped(self, decision: Decision) -> int:
        assert self.run_info is not None
        self.gh.notice(decision.note or "nothing to deploy", title="flyte-deploy: nothing to deploy")
        self._outputs(None, deployed=False)
        self.gh.append_summary(summary_markdown(self.run_info, warnings=tuple(self.warnings)))
        return 0

    def _deploy(self, inputs: ActionInputs, decision: Decision) -> int:
        from deployer.pipeline import run as run_pipeline

        assert self.run_info is not None
        version = self._preview_version(inputs, decision) if decision.kind is RunKind.preview else None
        request = self._request(inputs, decision, version=version)
        settings = request.settings
        if settings.endpoint is None and not settings.dry_run:
            raise UsageError(
                "input `endpoint` is not set: a deploy needs a Flyte control plane that outlives this job "
                "(set `endpoint` and `api-key`); for a run that deploys nothing set `dry-run: true` "
                "(plan) or `push: false` (build only)"
            )
        reporter = self._reporter(inputs) if decision.kind is RunKind.preview and inputs.comment else None
        deployment_id = (
            start_preview(reporter, self.run_info, project=settings.project, version=version or "")
            if not settings.dry_run
            else None
        )
        try:
            with self.gh.group(f"flyte-deploy: {decision.kind.value} → {settings.project}/{settings.domain}"):
                outcome = run_pipeline(request, progress=self.progress)
        except DeployError as exc:
            self.run_info = self.run_info.model_copy(update={"error": str(exc)})
            finish_preview(
                reporter, deployment_id, self.run_info, None, project=settings.project, comment=inputs.comment
            )
            raise
        report = outcome.report
        self.warnings.extend(report.plan.warnings)
        preview_url = self._preview_url(inputs, report, decision)
        error = _registration_error(report)
        self.run_info = self.run_info.model_copy(update={"preview_url": preview_url, "error": error})
        deployed = report.deployment is not None and report.deployment.ok and not report.deployment.dry_run
        self._outputs(report, deployed=deployed, preview_url=preview_url)
        finish_preview(
            reporter,
            deployment_id,
            self.run_info,
            report,
            project=settings.project,
            comment=inputs.comment and not settings.dry_run,
        )
        self.gh.append_summary(summary_markdown(self.run_info, report, warnings=tuple(self.warnings)))
        if error:
            self.gh.error(error, title="flyte-deploy: registration failed")
            return ControlPlaneError.exit_code
        return 0

    def _build_only(self, inputs: ActionInputs, decision: Decision) -> int:
        """Fork PRs and `push: false`: plan and build locally, without a registry or any secret."""
        from deployer.pipeline import run as run_pipeline

        assert self.run_info is not None
        self.gh.warning(decision.note or "build only", title="flyte-deploy: build only")
        # No registry: nothing is looked up or pushed anywhere, so no credential is ever needed.
        request = self._request(inputs, decision).with_settings(registry=None, push=False)
        with self.gh.group("flyte-deploy: plan and build (nothing pushed or deployed)"):
            report = run_pipeline(request, until="build", progress=self.progress).report
        self.warnings.extend(report.plan.warnings)
        self._outputs(report, deployed=False)
        self.gh.append_summary(summary_markdown(self.run_info, report, warnings=tuple(self.warnings)))
        return 0

    def _cleanup(self, inputs: ActionInputs, decision: Decision) -> int:
        from deployer.preview import clean_up

        assert self.run_info is not None and decision.pr is not None
        request = self._request(inputs, decision, require_project=False)
        if request.selection.path is None:
            self.warn(
                f"input `path` {inputs.path!r} does not plan: the preview's images are found only "
                "from what the embedded control plane recorded"
            )
        reporter = self._reporter(inputs)
        with self.gh.group(f"flyte-deploy: clean up the preview of #{decision.pr}"):
            recorded = recorded_preview(reporter, decision.pr)
            result: CleanupResult = clean_up(
                request,
                decision.pr,
                prefix=preview_prefix(inputs, decision.pr),
                head=decision.sha,
                shas=(*recorded.shas, *([decision.sha] if decision.sha else [])),
                progress=self.progress,
            )
            result = finish_cleanup(reporter, result, self.run_info, comment=inputs.comment)
        for warning in result.warnings:
            self.gh.warning(warning, title="flyte-deploy: cleanup")
        self._outputs(None, deployed=False)
        self.gh.append_summary(summary_markdown(self.run_info, cleanup=result, warnings=tuple(self.warnings)))
        return 0

    def _failed(self, exc: DeployError) -> int:
        title = "flyte-deploy: bad input" if isinstance(exc, UsageError) else f"flyte-deploy: {_kind(exc)}"
        self.gh.error(exc.message, file=exc.file, line=exc.line, title=title)
        self._outputs(None, deployed=False)
        run = self.run_info or RunInfo(kind=RunKind.skipped, event=self.env.get("GITHUB_EVENT_NAME"))
        run = run.model_copy(update={"error": exc.message})
        self.gh.append_summary(summary_markdown(run, warnings=tuple(self.warnings)))
        return exc.exit_code

    # ------------------------------------------------------------------ pieces
    def _request(self, inputs: ActionInputs, decision: Decision, **options: Any) -> DeployRequest:
        temp = self.env.get("RUNNER_TEMP")
        return to_request(
            inputs, decision, self.workspace, runner_temp=Path(temp) if temp else None, **options
        )

    def _event(self) -> dict[str, Any]:
        path = self.env.get("GITHUB_EVENT_PATH")
        if not path:
            return {}
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(
                f"GITHUB_EVENT_PATH {path}: cannot read the event payload: {exc.strerror}"
            ) from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"GITHUB_EVENT_PATH {path}: not JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(data, dict):
            raise UsageError(f"GITHUB_EVENT_PATH {path}: expected a JSON object")
        return data

    def _trust_workspace(self) -> None:
        """The checkout belongs to the runner's user, this container runs as root: without this git
        refuses to read the repository ("dubious ownership")."""
        try:
            subprocess.run(
                ["git", "config", "--global", "--add", "safe.directory", str(self.workspace)],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            self.warn(f"could not mark {self.workspace} as a git safe.directory: {exc}")

    def _run_info(self, decision: Decision) -> RunInfo:
        server = self.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo = self.env.get("GITHUB_REPOSITORY")
        run_id = self.env.get("GITHUB_RUN_ID")
        return RunInfo(
            kind=decision.kind,
            event=decision.event,
            pr=decision.pr,
            sha=decision.sha,
            ref=decision.ref,
            note=decision.note,
            run_url=f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None,
            commit_url=f"{server}/{repo}/commit/{decision.sha}" if repo and decision.sha else None,
        )

    def _preview_version(self, inputs: ActionInputs, decision: Decision) -> str:
        from deployer.gitctx import read_git_context
        from deployer.versioning import check_version, version_info

        assert decision.pr is not None
        root = (self.workspace / (inputs.root_dir or ".")).resolve()
        base = inputs.settings.version or version_info(read_git_context(root, environ=self.env)).version
        version = preview_prefix(inputs, decision.pr) + base
        try:
            return check_version(version)
        except UsageError:
            raise UsageError(
                f"input `preview-version-prefix`: the preview version {version!r} is not a valid Flyte "
                "version (1-128 characters from [A-Za-z0-9._-])"
            ) from None

    def _preview_url(self, inputs: ActionInputs, report: Report, decision: Decision) -> str | None:
        if not inputs.preview_url or report.deployment is None or report.deployment.dry_run:
            return None
        values = {
            "project": report.plan.project,
            "domain": report.plan.domain,
            "version": report.plan.version,
            "pr": str(decision.pr or ""),
            "sha": decision.sha or "",
        }
        url = inputs.preview_url
        for key, value in values.items():
            url = url.replace("{" + key + "}", value)
        return url

    def _reporter(self, inputs: ActionInputs) -> GitHubReporter | None:
        token = (
            inputs.github_token.get_secret_value() if inputs.github_token else self.env.get("GITHUB_TOKEN")
        )
        repository = self.env.get("GITHUB_REPOSITORY")
        if not token or not repository:
            self.warn("no github-token or GITHUB_REPOSITORY: no PR comment and no GitHub deployment")
            return None
        paced = inputs.settings.github_throttle
        settings = GitHubSettings(
            repository=repository,
            token=token,
            api_url=self.env.get("GITHUB_API_URL") or GitHubSettings.api_url,
            backoff_seconds=inputs.settings.github_backoff,
            # PyGithub's client-side pacing, unless turned off (local API servers).
            seconds_between_requests=GitHubSettings.seconds_between_requests if paced else 0.0,
            seconds_between_writes=GitHubSettings.seconds_between_writes if paced else 0.0,
        )
        return GitHubReporter(settings, warn=self.warn)

    def _outputs(self, report: Report | None, *, deployed: bool, preview_url: str | None = None) -> None:
        from deployer.plan import image_map

        # Before the trigger is known (bad inputs), there is no `trigger` to report.
        outputs = {"trigger": self.run_info.kind.value} if self.run_info else {}
        outputs["deployed"] = "true" if deployed else "false"
        if report is not None:
            mapping = image_map(report.plan, report.artifacts.images)
            by_env = {img.env_name: img.uri for img in report.artifacts.images}
            envs = report.deployment.environments if report.deployment else ()
            images = {e.name: e.image for e in envs if e.image} or by_env
            outputs |= {
                "version": report.plan.version,
                "images": json.dumps(images, sort_keys=True),
                "image-args": " ".join(f"--image {shlex.quote(f'{k}={v}')}" for k, v in mapping.items()),
                "bundle-uri": (report.artifacts.bundle.uri or "") if report.artifacts.bundle else "",
                "environments": json.dumps(_environments(report)),
                "preview-url": preview_url or "",
            }
        self.gh.set_outputs(outputs)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.gh.warning(message)

    def _log(self, message: str) -> None:
        self.progress.info(message)


def _environments(report: Report) -> list[dict[str, Any]]:
    if report.deployment is not None:
        return [
            {
                "name": e.name,
                "kind": e.kind,
                "tasks": list(e.tasks),
                "status": e.status,
                "image": e.image,
                "bundle_uri": e.bundle_uri,
                "triggers": [
                    {"task": t.task, "name": t.name, "schedule": t.schedule, "active": t.active}
                    for t in e.triggers
                ],
                "app": e.app.model_dump(mode="json", include={"name", "url", "revision"}) if e.app else None,
            }
            for e in report.deployment.environments
        ]
    built = {img.env_name: img.uri for img in report.artifacts.images}
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "tasks": list(e.tasks),
            "status": "built" if e.name in built else "planned",
            "image": built.get(e.name, e.image.uri),
            "bundle_uri": None,
            "triggers": [
                {"task": t.task, "name": t.name, "schedule": t.schedule, "active": t.active}
                for t in e.triggers
            ],
            "app": {"name": e.app.name, "url": None, "revision": None} if e.app else None,
        }
        for e in report.plan.environments
    ]


def _registration_error(report: Report) -> str | None:
    deployment = report.deployment
    if deployment is None or deployment.ok or deployment.dry_run:
        return None
    failed = next(e for e in deployment.environments if e.status == "failed")
    return f"registering {failed.name} failed: {failed.error}; run the workflow again to complete the deploy"


def _kind(exc: DeployError) -> str:
    # `DiscoveryError` → "discovery error"
    name = type(exc).__name__
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return words.replace("deploy error", "error")

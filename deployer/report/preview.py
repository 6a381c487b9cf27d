"""A PR preview's GitHub side: its `preview/pr-N` deployment, statuses and the sticky comment.

Used by the action for every preview deploy and by `flyte-deploy preview cleanup`. Every function
takes `reporter=None` (no token configured) and then does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.models import Report
from deployer.report.github import GitHubReporter
from deployer.report.models import CleanupResult, RunInfo, RunKind
from deployer.report.render import comment_marker, pr_comment_markdown


def preview_environment(pr: int) -> str:
    return f"preview/pr-{pr}"


@dataclass(frozen=True)
class RecordedPreview:
    """What earlier preview deploys recorded in their GitHub deployment payloads."""

    shas: tuple[str, ...] = ()
    """Commits the preview was deployed from: their `sha-<7>` image tags belong to the preview."""


def recorded_preview(reporter: GitHubReporter | None, pr: int) -> RecordedPreview:
    if reporter is None:
        return RecordedPreview()
    shas = {
        payload["sha"]
        for payload in reporter.deployment_payloads(preview_environment(pr))
        if payload.get("flyte_deploy") == 1 and isinstance(payload.get("sha"), str)
    }
    return RecordedPreview(shas=tuple(sorted(shas)))


def start_preview(reporter: GitHubReporter | None, run: RunInfo, *, project: str, version: str) -> int | None:
    """Create (or reuse, on a re-run) the commit's preview deployment and mark it in progress."""
    if reporter is None or run.pr is None or run.sha is None:
        return None
    deployment_id = reporter.ensure_deployment(
        sha=run.sha,
        environment=preview_environment(run.pr),
        description=f"Flyte preview of #{run.pr}: {project} version {version}",
        # Read back by `recorded_preview` when the PR closes.
        payload={"flyte_deploy": 1, "sha": run.sha, "version": version, "project": project},
        transient=True,
        production=False,
    )
    if deployment_id is not None:
        reporter.set_status(deployment_id, "in_progress", description="Deploying", log_url=run.run_url)
    return deployment_id


def finish_preview(
    reporter: GitHubReporter | None,
    deployment_id: int | None,
    run: RunInfo,
    report: Report | None,
    *,
    project: str,
    comment: bool,
) -> None:
    """The deployment's final status, older deployments of the PR made inactive, and the comment."""
    if reporter is None or run.pr is None:
        return
    ok = run.error is None and report is not None and (report.deployment is None or report.deployment.ok)
    if deployment_id is not None:
        if ok:
            reporter.set_status(
                deployment_id,
                "success",
                description=f"Deployed version {report.plan.version}" if report else "Deployed",
                environment_url=run.preview_url,
                log_url=run.run_url,
            )
            reporter.deactivate(
                preview_environment(run.pr), keep=deployment_id, description="Superseded by a newer push"
            )
        else:
            reporter.set_status(
                deployment_id, "failure", description=run.error or "Deploy failed", log_url=run.run_url
            )
    if comment:
        reporter.upsert_comment(
            run.pr, comment_marker(project), pr_comment_markdown(run, report, project=project)
        )


def finish_cleanup(
    reporter: GitHubReporter | None, result: CleanupResult, run: RunInfo | None, *, comment: bool = True
) -> CleanupResult:
    """Deactivate the preview's deployments and update its comment (never creating one)."""
    if reporter is None:
        return result
    deactivated = reporter.deactivate(
        preview_environment(result.pr), description=f"Pull request #{result.pr} closed: preview removed"
    )
    result = result.model_copy(update={"deactivated_deployments": tuple(deactivated)})
    if comment:
        run = run or RunInfo(kind=RunKind.cleanup, pr=result.pr)
        body = pr_comment_markdown(run, None, project=result.project, cleanup=result)
        reporter.upsert_comment(result.pr, comment_marker(result.project), body, create=False)
    return result

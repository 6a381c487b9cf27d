"""`flyte-deploy preview cleanup --pr N`: remove a closed pull request's preview (see `deployer.preview`)."""

from __future__ import annotations

import os

import typer

from deployer.commands import options as o
from deployer.request import DeployRequest

app = typer.Typer(help="PR preview deploys: clean up a closed PR's preview.", no_args_is_help=True)


@app.command("cleanup")
@o.uses_request("root", "code", "build", "target", "control_plane", "storage", selection=True)
def cleanup(
    request: DeployRequest,
    pr: int = typer.Option(..., "--pr", min=1, help="Pull request number."),
    version_prefix: str = typer.Option(
        "pr-{pr}-",
        "--version-prefix",
        help="Prefix of the preview's versions ({pr} is replaced), as the deploy used it.",
    ),
    head_sha: str | None = typer.Option(
        None,
        "--head-sha",
        help="The PR's last commit: its images stay for a release; earlier pushes' images are deleted "
        "when nothing else uses them. Without it only the pr-N tags go.",
    ),
    repository: list[str] | None = typer.Option(
        None,
        "--repository",
        help="Image repository the preview pushed to (besides those PATH plans). Repeatable.",
    ),
    as_json: o.JsonOpt = False,
) -> None:
    """Delete the registry tags `pr-N`, drop the preview's versions from the embedded control plane,
    and (with GITHUB_TOKEN and GITHUB_REPOSITORY set) mark its GitHub deployments inactive and update
    the sticky comment. Give PATH (as for deploy) so the preview's image repositories can be planned."""
    from deployer import output
    from deployer.preview import clean_up
    from deployer.preview import version_prefix as preview_prefix
    from deployer.report.github import GitHubReporter, GitHubSettings
    from deployer.report.preview import finish_cleanup, recorded_preview

    domain = request.settings.domain
    prefix = preview_prefix(version_prefix, pr, domain=domain)
    request = request.with_settings(domain=domain.replace("{pr}", str(pr)))
    progress = output.ConsoleProgress()
    reporter = None
    token, repo_name = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
    if token and repo_name:
        api_url = os.environ.get("GITHUB_API_URL") or GitHubSettings.api_url
        settings = GitHubSettings(repo_name, token, api_url=api_url)
        reporter = GitHubReporter(settings, warn=progress.warning)
    result = clean_up(
        request,
        pr,
        prefix=prefix,
        head=head_sha,
        shas=(*recorded_preview(reporter, pr).shas, *([head_sha] if head_sha else [])),
        repositories=repository or (),
        progress=progress,
    )
    if reporter is not None:
        result = finish_cleanup(reporter, result, run=None)
    for warning in result.warnings:
        progress.warning(warning)
    output.emit_cleanup(result, as_json=as_json)

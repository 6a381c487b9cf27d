"""`flyte-deploy version`: the Flyte version and image tags git gives this checkout."""

from __future__ import annotations

from deployer.commands import options as o
from deployer.errors import UsageError
from deployer.request import DeployRequest


@o.uses_request("root", "version")
def command(request: DeployRequest, as_json: o.JsonOpt = False) -> None:
    """Print the version (semver tag, else commit SHA, plus a content hash when dirty) and image tags."""
    from deployer import output
    from deployer.gitctx import read_git_context
    from deployer.versioning import version_info

    settings = request.settings
    if not settings.root.is_dir():
        raise UsageError(f"--root-dir {settings.root_dir}: not a directory")
    info = version_info(read_git_context(settings.root, sha=settings.sha), override=settings.version)
    progress = output.ConsoleProgress()
    for warning in info.warnings:
        progress.warning(warning)
    output.emit_version(info, as_json=as_json)

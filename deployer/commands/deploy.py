"""`flyte-deploy deploy`: plan, bundle/build, and register every environment's tasks."""

from __future__ import annotations

from deployer.commands import options as o
from deployer.errors import ControlPlaneError
from deployer.models import CopyStyle, Mode


def command(
    path: o.PathArg = None,
    env_var: o.VarArg = None,
    all_envs: o.AllOpt = False,
    recursive: o.RecursiveOpt = False,
    root_dir: o.RootDirOpt = None,
    copy_style: o.CopyStyleOpt = CopyStyle.loaded_modules,
    mode: o.ModeOpt = Mode.auto,
    version: o.VersionOpt = None,
    sha: o.ShaOpt = None,
    project: o.ProjectOpt = "flytesnacks",
    domain: o.DomainOpt = "development",
    org: o.OrgOpt = "",
    registry: o.RegistryOpt = None,
    image: o.ImageOpt = None,
    base_image_mirror: o.MirrorOpt = None,
    push: o.PushOpt = True,
    dry_run: o.DryRunOpt = False,
    endpoint: o.EndpointOpt = None,
    insecure: o.InsecureOpt = False,
    api_key: o.ApiKeyOpt = None,
    storage: o.StorageOpt = None,
    state_dir: o.StateDirOpt = None,
    as_json: o.JsonOpt = False,
) -> None:
    """Deploy environments: bundle or build their code, then register their tasks in dependency order.

    With no --endpoint, an embedded control plane (state in ROOT_DIR/.flyte-deploy) is used.
    Re-deploying the same version is a no-op; a changed task under an existing version is refused.
    """
    request = o.build_request(
        path=path,
        env_var=env_var,
        all_envs=all_envs,
        recursive=recursive,
        root_dir=root_dir,
        copy_style=copy_style,
        mode=mode,
        version=version,
        sha=sha,
        project=project,
        domain=domain,
        org=org,
        registry=registry,
        images=image,
        base_image_mirrors=base_image_mirror,
        push=push,
        dry_run=dry_run,
        endpoint=endpoint,
        insecure=insecure,
        api_key=api_key,
        storage=storage,
        state_dir=state_dir,
    )
    from deployer import output
    from deployer.pipeline import run

    outcome = run(request, progress=output.progress)
    report = outcome.report
    for warning in report.plan.warnings:
        output.progress(f"warning: {warning}")
    output.emit_report(report, as_json=as_json, specs=outcome.specs_json() if dry_run else None)
    deployment = report.deployment
    if deployment is not None and not deployment.ok and not deployment.dry_run:
        failed = next(e for e in deployment.environments if e.status == "failed")
        done = [e.name for e in deployment.environments if e.status in ("registered", "unchanged")]
        left = [e.name for e in deployment.environments if e.status in ("failed", "skipped")]
        raise ControlPlaneError(
            f"registering {failed.name} failed: {failed.error}; registered: {', '.join(done) or 'none'}; "
            f"not registered: {', '.join(left)}. Run the same deploy again to complete it"
        )

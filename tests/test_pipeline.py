"""The deploy pipeline in bundle mode (no Docker needed): the embedded control plane, file storage,
registration order, idempotence, immutable versions, partial failure and concurrent deploys."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer.controlplane.embedded import EmbeddedControlPlane
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.store import TaskKey, TaskStore
from deployer.errors import ControlPlaneError, VersionConflict
from deployer.models import EnvDeployment, Mode
from deployer.pipeline import run
from deployer.request import DeployRequest
from tests.fixtures.pipeline import CliResult

CHAIN = ("pipeline/viz.py", "viz", "--mode", "bundle")


def statuses(result: CliResult) -> dict[str, str]:
    return {env["name"]: env["status"] for env in result.json["deployment"]["environments"]}


def stored_versions(state_dir: Path, task: str) -> list[str]:
    with EmbeddedControlPlane(state_dir) as client:
        return client.list_versions("flytesnacks", "development", "", task)


def test_deploy_registers_dependencies_first_and_reads_back(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    result = flyte_deploy("deploy", *CHAIN, "--json", cwd=repo.path)
    assert result.code == 0, result.stderr

    report = result.json
    version = report["plan"]["version"]
    assert version.startswith(repo.head_sha[:7]) or repo.head_sha in version
    envs = report["deployment"]["environments"]
    assert [e["name"] for e in envs] == ["prep", "ml", "viz"]
    assert {e["status"] for e in envs} == {"registered"}
    # The progress lines show the same order, one registration per environment.
    order = [line.split(":")[0] for line in result.stderr.splitlines() if ": registered" in line]
    assert order == ["prep", "ml", "viz"]

    bundle = report["artifacts"]["bundle"]
    state_dir = repo.path / ".flyte-deploy"
    # Uploaded through the embedded plane's data proxy: STATE/bundles/PROJECT/DOMAIN/bundles/<sha256>.tar.gz
    stored = state_dir / "bundles" / "flytesnacks" / "development" / "bundles" / f"{bundle['digest']}.tar.gz"
    assert bundle["uri"] == stored.as_uri() and stored.is_file()

    with EmbeddedControlPlane(state_dir) as client:
        details = client.get_task("flytesnacks", "development", "", "ml.train", version)
    assert details is not None
    container = details.spec.task_template.container
    assert container.image == "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
    args = list(container.args)
    assert args[args.index("--tgz") + 1] == bundle["uri"]
    assert args[-4:] == ["mod", "pipeline.ml", "instance", "train"]


def test_redeploy_is_a_no_op(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    first = flyte_deploy("deploy", *CHAIN, "--json", cwd=repo.path)
    assert first.code == 0, first.stderr
    second = flyte_deploy("deploy", *CHAIN, "--json", cwd=repo.path)
    assert second.code == 0, second.stderr

    assert second.json["plan"]["version"] == first.json["plan"]["version"]
    assert set(statuses(second).values()) == {"unchanged"}
    assert second.json["artifacts"]["bundle"]["reused"] is True
    assert second.json["artifacts"]["images"] == []
    assert stored_versions(repo.path / ".flyte-deploy", "viz.chart") == [first.json["plan"]["version"]]


def test_changed_code_under_an_existing_version_is_refused(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    assert flyte_deploy("deploy", *CHAIN, "--version", "v1", cwd=repo.path).code == 0
    # Change a task and add one: the new task must not be registered either.
    prep = repo.read("pipeline/prep.py")
    repo.write(
        "pipeline/prep.py",
        prep.replace("list(range(n))", "list(range(n + 1))")
        + "\n\n@prep.task\nasync def extra(n: int) -> int:\n    return n\n",
    )
    refused = flyte_deploy("deploy", *CHAIN, "--version", "v1", cwd=repo.path)

    assert refused.code != 0
    assert refused.error_line.startswith("error: task prep.load version v1 already exists")
    assert "versions are immutable" in refused.error_line
    assert "Traceback" not in refused.stderr
    state_dir = repo.path / ".flyte-deploy"
    assert stored_versions(state_dir, "prep.extra") == []
    assert stored_versions(state_dir, "prep.load") == ["v1"]


def test_dry_run_prints_specs_and_changes_nothing(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    result = flyte_deploy("deploy", *CHAIN, "--dry-run", "--json", cwd=repo.path)
    assert result.code == 0, result.stderr

    report = result.json
    assert report["deployment"]["dry_run"] is True
    assert set(statuses(result).values()) == {"skipped"}
    specs = report["task_specs"]
    assert list(specs) == ["prep", "ml", "viz"]
    load = specs["prep"][0]["task_template"]
    assert load["id"]["name"] == "prep.load"
    args = load["container"]["args"]
    digest = report["plan"]["bundle"]["digest"]
    planned = repo.path / ".flyte-deploy" / "bundles" / "flytesnacks" / "development" / "bundles"
    planned_uri = (planned / f"{digest}.tar.gz").as_uri()
    assert args[args.index("--tgz") + 1] == planned_uri
    assert not (repo.path / ".flyte-deploy").exists()  # no bundle stored, no control plane state

    human = flyte_deploy("deploy", *CHAIN, "--dry-run", cwd=repo.path)
    assert human.code == 0, human.stderr
    assert "viz.chart: TaskSpec that would be sent" in human.stdout
    assert "dry run: nothing was built, pushed, uploaded or registered" in human.stdout
    assert not (repo.path / ".flyte-deploy").exists()


def test_bad_input_is_one_line_and_deploys_nothing(project_repo, flyte_deploy) -> None:
    repo = project_repo("chain")
    result = flyte_deploy("deploy", "pipeline/viz.py", "nope", "--mode", "bundle", cwd=repo.path)
    assert result.code != 0
    assert result.error_line.startswith("error: ") and "nope" in result.error_line
    assert "Traceback" not in result.stderr
    assert not (repo.path / ".flyte-deploy").exists()

    hybrid = project_repo("hybrid")  # `prod` has an image spec of its own: it needs a build
    no_push = flyte_deploy("deploy", "--all", "workflows.py", "--no-push", cwd=hybrid.path)
    assert no_push.code != 0
    assert no_push.error_line.startswith("error: --no-push: the images of prod would exist only")
    assert not (hybrid.path / ".flyte-deploy").exists()


# -------------------------------------------------------------------------------- partial failure


def test_control_plane_stopped_mid_deploy_then_rerun_completes(
    project_repo, start_serve, flyte_deploy
) -> None:
    """The control plane goes away after the first environment: the deploy says what is registered and
    what is not; a rerun against a restarted control plane registers the rest."""
    repo = project_repo("chain")
    state = repo.path.parent / "served-state"
    served = start_serve(state)

    def stop_after_first(env: EnvDeployment) -> None:
        if env.name == "prep":
            served.stop()

    request = DeployRequest.of(
        repo.path / "pipeline" / "viz.py",
        "viz",
        root_dir=repo.path,
        mode=Mode.bundle,
        endpoint=served.url,
    )
    outcome = run(request, on_registered=stop_after_first)
    deployment = outcome.report.deployment
    assert deployment is not None and not deployment.ok
    got = {e.name: (e.status, e.error) for e in deployment.environments}
    assert got["prep"] == ("registered", None)
    assert got["ml"][0] == "failed" and "unreachable" in (got["ml"][1] or "")
    assert got["viz"] == ("skipped", None)

    restarted = start_serve(state)
    rerun = flyte_deploy("deploy", *CHAIN, "--endpoint", restarted.url, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert statuses(rerun) == {"prep": "unchanged", "ml": "registered", "viz": "registered"}


class _RefusingStore(TaskStore):
    """Our real store, except that it refuses tasks of one environment while `refuse` is set (as a
    control plane with a failing database or a policy would)."""

    def __init__(self, state_dir: Path, env_name: str) -> None:
        super().__init__(state_dir)
        self.env_name = env_name
        self.refuse = True

    def put(self, key: TaskKey, spec: Any, triggers: Any = ()) -> Any:
        if self.refuse and key.name.startswith(f"{self.env_name}."):
            raise ControlPlaneError(f"deploys to {self.env_name} are not allowed today")
        return super().put(key, spec, triggers)


@pytest.fixture
def refusing_control_plane(tmp_path: Path) -> Iterator[tuple[str, _RefusingStore]]:
    store = _RefusingStore(tmp_path / "refusing", "ml")
    with ControlPlaneServer(store, "127.0.0.1", 0) as server:
        yield server.url, store


def test_refused_environment_stops_the_deploy_with_one_line(
    project_repo, flyte_deploy, refusing_control_plane
) -> None:
    url, store = refusing_control_plane
    repo = project_repo("chain")
    failed = flyte_deploy("deploy", *CHAIN, "--endpoint", url, "--json", cwd=repo.path)

    assert failed.code != 0
    assert statuses(failed) == {"prep": "registered", "ml": "failed", "viz": "skipped"}
    assert failed.error_line.startswith("error: registering ml failed: ")
    assert "not allowed today" in failed.error_line
    assert failed.error_line.endswith(
        "registered: prep; not registered: ml, viz. Run the same deploy again to complete it"
    )

    store.refuse = False
    rerun = flyte_deploy("deploy", *CHAIN, "--endpoint", url, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert statuses(rerun) == {"prep": "unchanged", "ml": "registered", "viz": "registered"}


# -------------------------------------------------------------------------------- concurrency


def test_two_concurrent_deploys_of_one_commit(project_repo) -> None:
    repo = project_repo("chain")
    command = [sys.executable, "-m", "deployer", "deploy", *CHAIN, "--json"]
    processes = [
        subprocess.Popen(command, cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [CliResult(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    for p in processes:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]

    for result in results:
        assert result.code == 0, result.stderr
    versions = {r.json["plan"]["version"] for r in results}
    assert len(versions) == 1
    # Each one-task environment was registered by exactly one of the two; the other saw it unchanged.
    for env in ("prep", "ml", "viz"):
        seen = sorted(statuses(r)[env] for r in results)
        assert seen == ["registered", "unchanged"], (env, seen)
    assert stored_versions(repo.path / ".flyte-deploy", "viz.chart") == list(versions)


def test_pipeline_report_carries_timings_and_specs(project_repo) -> None:
    repo = project_repo("chain")
    request = DeployRequest.of(repo.path / "pipeline" / "viz.py", "viz", root_dir=repo.path, mode=Mode.bundle)
    outcome = run(request)
    stages = [t.stage for t in outcome.report.timings]
    assert stages == ["plan", "serialize", "bundle", "register"]  # serialized once, before the upload
    assert [spec.task_template.id.name for spec in outcome.specs["viz"]] == ["viz.chart"]
    assert outcome.report.deployment is not None and outcome.report.deployment.ok


def test_conflict_raises_before_registering(project_repo) -> None:
    repo = project_repo("chain")
    request = DeployRequest.of(
        repo.path / "pipeline" / "viz.py",
        "viz",
        root_dir=repo.path,
        mode=Mode.bundle,
        version="v7",
    )
    run(request)
    (repo.path / "pipeline" / "viz.py").write_text(
        (repo.path / "pipeline" / "viz.py").read_text().replace('"#" * int(score)', '"*" * int(score)')
    )
    # The bundle changed, so every task differs; the first one in deploy order is named.
    with pytest.raises(VersionConflict, match=r"task prep\.load version v7 already exists"):
        run(request)

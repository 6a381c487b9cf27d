"""Registration at scale: each task serialized once (references filled in after), one bulk check, nothing
at all for a deploy the control plane holds already, dependencies first and independent environments at
once. Observed through what a real `flyte-deploy serve` was asked (its request log)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from deployer.controlplane.registration import levels
from deployer.controlplane.serialize import (
    PLACEHOLDER_BUNDLE,
    fill_references,
    image_cache_transport,
    placeholder_image,
    task_specs,
)
from deployer.controlplane.specs import canonical_bytes
from deployer.models import ImageSpec, PlannedEnv
from tests.fixtures.controlplane import BASE_IMAGE, CALC_IMAGE, CALC_PROJECT, MakeProject
from tests.fixtures.protocol import Serve

CHAIN = ("deploy", "pipeline/viz.py", "viz", "--mode", "bundle")


def rpc_counts(log: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method in re.findall(r"^\S+ 127\.0\.0\.1 (\w+)", log, flags=re.MULTILINE):
        counts[method] = counts.get(method, 0) + 1
    return counts


def test_filling_references_gives_the_bytes_of_serializing_with_them(flyte_project: MakeProject) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    real = {"cp_base": BASE_IMAGE, "cp_calc": CALC_IMAGE}
    placeholders = {"cp_base": placeholder_image(0), "cp_calc": placeholder_image(1)}
    bundle = "s3://bucket/bundles/flytesnacks/development/bundles/abc.tar.gz"
    replacements = {
        **{placeholders[e]: real[e] for e in real},
        PLACEHOLDER_BUNDLE: bundle,
        image_cache_transport(placeholders): image_cache_transport(real),
    }
    for env in (project.module.base, project.module.calc):
        common = {
            "version": "v1",
            "project": "flytesnacks",
            "domain": "development",
            "org": "",
            "root_dir": project.root,
            "bundle_digest": "sha256:abc",
        }
        direct = task_specs(env, image_uri=real[env.name], bundle_uri=bundle, image_lookup=real, **common)
        draft = task_specs(
            env,
            image_uri=placeholders[env.name],
            bundle_uri=PLACEHOLDER_BUNDLE,
            image_lookup=placeholders,
            **common,
        )
        filled = fill_references(draft, replacements)
        assert [canonical_bytes(s) for s in filled] == [canonical_bytes(s) for s in direct]
        assert all("flyte-deploy.invalid" not in str(s) for s in filled)


def test_levels_keep_dependencies_first() -> None:
    def env(name: str, *deps: str) -> PlannedEnv:
        image = ImageSpec(spec_id="x", uri="u", needs_build=False)
        return PlannedEnv(name=name, depends_on=deps, tasks=(), image=image, mode="bundle", mode_reason="")

    plan = [env("a"), env("b"), env("c", "a"), env("d", "c", "b"), env("e", "a")]
    assert [[e.name for e in level] for level in levels(plan)] == [["a", "b"], ["c", "e"], ["d"]]


def test_a_redeploy_the_plane_holds_asks_one_listing_and_nothing_else(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    served = serve(tmp_path / "state")
    repo = project_repo("chain")
    first = flyte_deploy(*CHAIN, "--endpoint", served.url, "--json", cwd=repo.path)
    assert first.code == 0, first.stderr
    after_first = rpc_counts(served.log())
    # A fresh deploy: one bulk listing, one lookup probing the identifiers (before anything is built), no
    # GetTaskDetails per task (nothing is held), one DeployTask per task.
    tasks = sum(len(env["tasks"]) for env in first.json["deployment"]["environments"])
    assert after_first["ListTasks"] == 1
    assert after_first["GetTaskDetails"] == 1
    assert after_first["DeployTask"] == tasks
    # Dependencies strictly first: every task of an environment lands before any task of its dependents.
    order = re.findall(r"DeployTask \S*?/flytesnacks/development/(\w+)\.", served.log())
    assert order == sorted(order, key=["prep", "ml", "viz"].index)

    again = flyte_deploy(*CHAIN, "--endpoint", served.url, "--json", cwd=repo.path)
    assert again.code == 0, again.stderr
    assert {e["status"] for e in again.json["deployment"]["environments"]} == {"unchanged"}
    assert [t["stage"] for t in again.json["timings"]] == ["plan"]  # nothing serialized, built, uploaded
    assert again.json["artifacts"]["bundle"]["uri"] == first.json["artifacts"]["bundle"]["uri"]
    after_second = rpc_counts(served.log())
    new = {
        k: after_second[k] - after_first.get(k, 0)
        for k in after_second
        if after_second[k] != after_first.get(k)
    }
    assert new == {"GetProject": 1, "GetTaskDetails": 1, "ListTasks": 1}

    # Without the receipt (a fresh CI machine): serialized once, compared against what the plane holds.
    shutil.rmtree(repo.path / ".flyte-deploy")
    fresh = flyte_deploy(*CHAIN, "--endpoint", served.url, "--json", cwd=repo.path)
    assert fresh.code == 0, fresh.stderr
    assert {e["status"] for e in fresh.json["deployment"]["environments"]} == {"unchanged"}
    after_fresh = rpc_counts(served.log())
    assert after_fresh["GetTaskDetails"] - after_second["GetTaskDetails"] == 1 + tasks
    assert after_fresh["DeployTask"] == after_second["DeployTask"]  # nothing sent again


def test_a_receipt_is_not_trusted_when_the_plane_lost_the_tasks(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    repo = project_repo("chain")
    served = serve(tmp_path / "state")
    assert flyte_deploy(*CHAIN, "--endpoint", served.url, cwd=repo.path).code == 0
    served.stop()
    wiped = serve(tmp_path / "new-state", port=served.port)  # same URL, empty plane
    rerun = flyte_deploy(*CHAIN, "--endpoint", wiped.url, "--json", cwd=repo.path)
    assert rerun.code == 0, rerun.stderr
    assert {e["status"] for e in rerun.json["deployment"]["environments"]} == {"registered"}


def test_a_changed_dependency_file_changes_the_fingerprint(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    """Same explicit version, edited code: the receipt does not match, so the conflict is found."""
    served = serve(tmp_path / "state")
    repo = project_repo("chain")
    assert flyte_deploy(*CHAIN, "--version", "v1", "--endpoint", served.url, cwd=repo.path).code == 0
    prep = repo.read("pipeline/prep.py")
    repo.write("pipeline/prep.py", prep.replace("list(range(n))", "list(range(n + 2))"))
    refused = flyte_deploy(*CHAIN, "--version", "v1", "--endpoint", served.url, cwd=repo.path)
    assert refused.code != 0
    assert refused.error_line.startswith("error: task prep.load version v1 already exists")

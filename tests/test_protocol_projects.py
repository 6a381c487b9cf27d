"""Projects: like Flyte's backend, a control plane takes tasks and bundles only for a project it has. A
deploy to a missing project stops before anything is built or uploaded, in one line saying how to create
it; `--create-project` creates it; the one-shot embedded plane creates it and says so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.project import project_service_pb2 as ps
from flyteidl2.project.project_service_connect import ProjectServiceClientSync

from deployer.controlplane.store import DB_NAME, TaskStore
from tests.fixtures.protocol import Serve, clean_env, flyte_cli

FLAT = ("deploy", "workflows.py", "env", "--mode", "bundle")


def test_serve_starts_with_the_default_project(tmp_path: Path, serve: Serve) -> None:
    served = serve(tmp_path / "state")
    listed = flyte_cli(
        tmp_path, "--endpoint", served.endpoint, "--insecure", "get", "project", env=clean_env(tmp_path / "h")
    )
    assert listed.returncode == 0, listed.stderr
    assert "flytesnacks" in listed.stdout
    project = ProjectServiceClientSync(served.url).get_project(ps.GetProjectRequest(id="flytesnacks")).project
    assert [d.name for d in project.domains] == ["development", "staging", "production"]


def test_a_deploy_to_a_missing_project_is_one_line_and_builds_and_uploads_nothing(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    served = serve(tmp_path / "state")
    repo = project_repo("flat")
    refused = flyte_deploy(*FLAT, "--project", "ml-team", "--endpoint", served.url, cwd=repo.path)

    assert refused.code != 0
    assert refused.error_line == (
        f"error: project ml-team does not exist on control plane {served.url}: create it "
        "(`flyte create project --id ml-team --name ml-team`) or deploy with --create-project"
    )
    assert "Traceback" not in refused.stderr
    # Nothing uploaded (serve's storage untouched), nothing built or bundled on this side, nothing registered.
    assert not (served.state_dir / "bundles").exists()
    assert not list(repo.path.glob(".flyte-deploy/bundle*"))
    log = served.log()
    assert "GetProject ml-team -> NOT_FOUND" in log
    assert "CreateUploadLocation" not in log and "DeployTask" not in log

    # Created with the real flyte CLI, the same deploy goes through.
    created = flyte_cli(
        tmp_path, "--endpoint", served.endpoint, "--insecure",
        "create", "project", "--id", "ml-team", "--name", "ML",
        env=clean_env(tmp_path / "h"),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    deployed = flyte_deploy(*FLAT, "--project", "ml-team", "--endpoint", served.url, "--json", cwd=repo.path)
    assert deployed.code == 0, deployed.stderr
    assert deployed.json["deployment"]["project"] == "ml-team"


def test_create_project_creates_it_on_a_served_plane(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    served = serve(tmp_path / "state")
    repo = project_repo("flat")
    deployed = flyte_deploy(
        *FLAT, "--project", "analytics", "--create-project", "--endpoint", served.url, cwd=repo.path
    )
    assert deployed.code == 0, deployed.stderr
    assert f"project analytics: created on {served.url}" in deployed.stderr
    assert TaskStore(served.state_dir).get_project("analytics") is not None
    # Asking again changes nothing and says nothing.
    again = flyte_deploy(
        *FLAT, "--project", "analytics", "--create-project", "--endpoint", served.url, cwd=repo.path
    )
    assert again.code == 0, again.stderr
    assert "created on" not in again.stderr


def test_the_one_shot_embedded_plane_creates_the_project_and_says_so(project_repo, flyte_deploy) -> None:
    repo = project_repo("flat")
    deployed = flyte_deploy(*FLAT, "--project", "sandbox", cwd=repo.path)
    assert deployed.code == 0, deployed.stderr
    state = repo.path / ".flyte-deploy"
    assert f"project sandbox: created on embedded ({state})" in deployed.stderr
    assert "creates the projects it is deployed to" in deployed.stderr
    assert TaskStore(state).get_project("sandbox") is not None


def test_state_written_before_projects_existed_keeps_its_projects(tmp_path: Path) -> None:
    state = tmp_path / "old"
    state.mkdir()
    with sqlite3.connect(state / DB_NAME) as db:  # schema 1, as an earlier flyte-deploy left it
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '1');
            CREATE TABLE tasks (project TEXT NOT NULL, domain TEXT NOT NULL, name TEXT NOT NULL,
                version TEXT NOT NULL, spec BLOB NOT NULL, digest TEXT NOT NULL, environment TEXT NOT NULL,
                short_name TEXT NOT NULL, is_entrypoint INTEGER NOT NULL, deployed_at_ns INTEGER NOT NULL,
                triggers BLOB NOT NULL, PRIMARY KEY (project, domain, name, version));
            INSERT INTO tasks VALUES ('acme', 'staging', 'a.b', 'v1', x'', 'sha256:0', 'a', 'b', 0, 1, x'');
            """
        )
    store = TaskStore(state)
    assert store.get_project("acme") is not None
    assert store.count() == 1


@pytest.mark.parametrize("bad", ["", "a b", "../x", "x" * 64])
def test_project_ids_are_checked(controlplane, bad: str) -> None:
    client = ProjectServiceClientSync(controlplane.url)
    with pytest.raises(ConnectError) as err:
        client.create_project(ps.CreateProjectRequest(project=ps.Project(id=bad, name="n")))
    assert err.value.code == Code.INVALID_ARGUMENT


def test_a_project_is_created_once(controlplane) -> None:
    client = ProjectServiceClientSync(controlplane.url)
    client.create_project(ps.CreateProjectRequest(project=ps.Project(id="team-a.v2", name="Team A")))
    with pytest.raises(ConnectError) as err:
        client.create_project(ps.CreateProjectRequest(project=ps.Project(id="team-a.v2", name="Other")))
    assert err.value.code == Code.ALREADY_EXISTS
    got = client.get_project(ps.GetProjectRequest(id="team-a.v2")).project
    assert (got.id, got.name) == ("team-a.v2", "Team A")
    ids = [p.id for p in client.list_projects(ps.ListProjectsRequest()).projects.projects]
    assert ids == ["flytesnacks", "acme", "team-a.v2"]

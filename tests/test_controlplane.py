"""Our client against our embedded control plane, over real HTTP (ConnectRPC), SQLite underneath."""

from __future__ import annotations

import base64
import http.server
import io
import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from flyteidl2.task.task_service_connect import TaskServiceClientSync

from deployer.controlplane.embedded import EmbeddedControlPlane
from deployer.controlplane.remote import RemoteControlPlane, normalize_endpoint
from deployer.controlplane.serialize import task_specs
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.specs import canonical_bytes, spec_digest
from deployer.controlplane.store import DB_NAME, TaskKey, TaskStore
from deployer.errors import ControlPlaneError, UsageError, VersionConflict
from tests.fixtures.controlplane import (
    BASE_IMAGE,
    CALC_IMAGE,
    CALC_PROJECT,
    TEST_PROJECTS,
    MakeProject,
    StartServe,
)
from tests.fixtures.gitrepo import GitRepo

PROJECT, DOMAIN = "acme", "staging"

CalcSpecs = Callable[..., dict[str, td.TaskSpec]]


@pytest.fixture
def calc_specs(flyte_project: MakeProject) -> CalcSpecs:
    """Real TaskSpecs of the calc project's `cp_calc` env, keyed by task name."""
    project = flyte_project({"app.py": CALC_PROJECT})

    def make(version: str = "v1", image: str = CALC_IMAGE, domain: str = DOMAIN) -> dict[str, td.TaskSpec]:
        specs = task_specs(
            project.module.calc,
            version=version,
            project=PROJECT,
            domain=domain,
            org="",
            root_dir=project.root,
            image_uri=image,
            bundle_uri=None,
            bundle_digest=None,
            image_lookup={"cp_base": BASE_IMAGE},
        )
        return {s.task_template.id.name: s for s in specs}

    return make


def deploy(client: RemoteControlPlane, spec: td.TaskSpec) -> str:
    return client.deploy_task(spec)


def with_version(spec: td.TaskSpec, version: str) -> td.TaskSpec:
    clone = td.TaskSpec()
    clone.CopyFrom(spec)
    clone.task_template.id.version = version
    return clone


def raw(server: ControlPlaneServer) -> TaskServiceClientSync:
    return TaskServiceClientSync(server.url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- deploy / read back ----------------------------------------------------------------------


def test_deployed_task_reads_back_field_for_field(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    add = calc_specs()["cp_calc.add"]
    client = RemoteControlPlane(controlplane.url)

    assert deploy(client, add) == "registered"

    details = client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v1")
    assert details is not None
    assert canonical_bytes(details.spec) == canonical_bytes(add)
    assert (details.task_id.name, details.task_id.version) == ("cp_calc.add", "v1")
    assert details.metadata.short_name == "add"
    assert details.metadata.environment_name == "cp_calc"
    assert details.metadata.short_description == "Add two numbers."
    assert details.metadata.deployed_at.seconds > 0


def test_redeploying_an_identical_spec_is_a_no_op(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    add = calc_specs()["cp_calc.add"]
    client = RemoteControlPlane(controlplane.url)
    deploy(client, add)
    first = controlplane.store.get(TaskKey("", PROJECT, DOMAIN, "cp_calc.add", "v1"))

    # Serialized again from scratch: equal bytes, so nothing changes.
    assert deploy(client, calc_specs()["cp_calc.add"]) == "unchanged"

    assert controlplane.store.count() == 1
    assert controlplane.store.get(TaskKey("", PROJECT, DOMAIN, "cp_calc.add", "v1")) == first


def test_a_different_spec_under_an_existing_version_is_refused(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    deploy(client, calc_specs()["cp_calc.add"])
    other_image = "127.0.0.1:5000/cp/calc@sha256:" + "d" * 64

    with pytest.raises(VersionConflict) as err:
        deploy(client, calc_specs(image=other_image)["cp_calc.add"])

    message = str(err.value)
    assert "cp_calc.add version v1 already exists in acme/staging" in message
    assert "task_template.container.image" in message and "immutable" in message
    kept = client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v1")
    assert kept is not None and kept.spec.task_template.container.image == CALC_IMAGE

    # The wire answer is Flyte's ALREADY_EXISTS, which the flyte SDK treats as "skip".
    with pytest.raises(ConnectError) as wire:
        raw(controlplane).deploy_task(
            ts.DeployTaskRequest(
                task_id=_task_id("cp_calc.add", "v1"), spec=calc_specs(image=other_image)["cp_calc.add"]
            )
        )
    assert wire.value.code == Code.ALREADY_EXISTS
    assert "different spec" in wire.value.message


def test_unknown_task_or_version_is_not_found(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    deploy(client, calc_specs()["cp_calc.add"])

    assert client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v2") is None
    assert client.get_task(PROJECT, DOMAIN, "", "cp_calc.nope", "v1") is None
    with pytest.raises(ConnectError) as err:
        raw(controlplane).get_task_details(ts.GetTaskDetailsRequest(task_id=_task_id("cp_calc.add", "v2")))
    assert err.value.code == Code.NOT_FOUND
    assert err.value.message == "task acme/staging/cp_calc.add@v2 not found"


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("version", "v 1", "task_id.version: version 'v 1' must be 1-63 characters of [A-Za-z0-9._-]"),
        ("version", "1.0.0+build.5", "must be 1-63 characters of [A-Za-z0-9._-]"),
        ("version", "v" * 64, "task_id.version: must be at most 63 characters"),
        ("version", "", "task_id.version: must be at least 1 characters"),
        ("name", "", "task_id.name: must be at least 1 characters"),
        ("project", "p" * 64, "task_id.project: must be at most 63 characters"),
    ],
)
def test_malformed_identifiers_are_invalid_argument(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs, field: str, value: str, complaint: str
) -> None:
    spec = calc_specs()["cp_calc.add"]
    setattr(spec.task_template.id, field, value)
    task_id = _task_id("cp_calc.add", "v1")
    setattr(task_id, field, value)

    with pytest.raises(ConnectError) as err:
        raw(controlplane).deploy_task(ts.DeployTaskRequest(task_id=task_id, spec=spec))
    assert err.value.code == Code.INVALID_ARGUMENT
    assert complaint in err.value.message

    with pytest.raises(ControlPlaneError) as ours:
        RemoteControlPlane(controlplane.url).deploy_task(spec)
    assert "INVALID_ARGUMENT" in str(ours.value) and complaint in str(ours.value)
    assert controlplane.store.count() == 0


def test_task_id_must_name_the_task_in_the_spec(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    spec = calc_specs()["cp_calc.add"]
    with pytest.raises(ConnectError) as err:
        raw(controlplane).deploy_task(ts.DeployTaskRequest(task_id=_task_id("cp_calc.add", "v9"), spec=spec))
    assert err.value.code == Code.INVALID_ARGUMENT
    assert err.value.message == "task_id.version is 'v9' but spec.task_template.id.version is 'v1'"
    with pytest.raises(ConnectError) as missing:
        raw(controlplane).deploy_task(ts.DeployTaskRequest(task_id=_task_id("cp_calc.add", "v1")))
    assert missing.value.code == Code.INVALID_ARGUMENT and "spec: value is required" in missing.value.message


def test_org_does_not_scope_the_single_tenant_plane(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    """The flyte SDK calls 127.0.0.1 org "127" and localhost org "": both must see the same tasks."""
    spec = calc_specs()["cp_calc.add"]
    spec.task_template.id.org = "127"
    client = RemoteControlPlane(controlplane.url)
    assert client.deploy_task(spec) == "registered"
    found = client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v1")
    assert found is not None and found.spec.task_template.id.org == "127"


# -- listing ---------------------------------------------------------------------------------


def test_list_tasks_gives_the_latest_version_of_each_task(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    deploy(client, calc_specs("v1")["cp_calc.add"])
    deploy(client, calc_specs("v2")["cp_calc.add"])
    deploy(client, calc_specs("v1")["cp_calc.total"])
    deploy(client, calc_specs("v3", domain="other")["cp_calc.add"])

    listed = client.list_tasks(PROJECT, DOMAIN, "")
    assert [(t.task_id.name, t.task_id.version) for t in listed] == [
        ("cp_calc.add", "v2"),
        ("cp_calc.total", "v1"),
    ]
    assert [t.metadata.environment_name for t in listed] == ["cp_calc", "cp_calc"]
    assert client.list_versions(PROJECT, DOMAIN, "", "cp_calc.add") == ["v2", "v1"]
    assert client.list_versions(PROJECT, DOMAIN, "", "cp_calc.nope") == []


def test_listing_pages_through_every_version(controlplane: ControlPlaneServer, calc_specs: CalcSpecs) -> None:
    add = calc_specs()["cp_calc.add"]
    client = RemoteControlPlane(controlplane.url)
    versions = [f"v{i:03d}" for i in range(130)]
    for v in versions:
        deploy(client, with_version(add, v))

    assert client.list_versions(PROJECT, DOMAIN, "", "cp_calc.add") == versions[::-1]
    first = raw(controlplane).list_versions(
        ts.ListVersionsRequest(
            task_name=td.TaskName(org="", project=PROJECT, domain=DOMAIN, name="cp_calc.add"),
            request=list_pb2.ListRequest(limit=50),
        )
    )
    assert len(first.versions) == 50 and first.token == "50"


def test_list_filters_and_sorting_the_sdk_sends(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    deploy(client, calc_specs("v1")["cp_calc.add"])
    deploy(client, calc_specs("v1")["cp_calc.total"])
    deploy(client, calc_specs("v2")["cp_calc.add"])

    def names(*filters: list_pb2.Filter, sort: list_pb2.Sort | None = None, limit: int = 0) -> list[str]:
        response = raw(controlplane).list_tasks(
            ts.ListTasksRequest(
                project_id=_project(),
                request=list_pb2.ListRequest(filters=filters, sort_by=sort, limit=limit),
            )
        )
        return [f"{t.task_id.name}@{t.task_id.version}" for t in response.tasks]

    # flyte.remote.Task.get(auto_version="latest") asks for one task by name, newest first.
    newest = list_pb2.Sort(key="created_at", direction=list_pb2.Sort.DESCENDING)
    by_name = list_pb2.Filter(function=list_pb2.Filter.EQUAL, field="name", values=["cp_calc.add"])
    assert names(by_name, sort=newest, limit=1) == ["cp_calc.add@v2"]
    # Task.listall(by_task_env=...) filters with CONTAINS "<env>."
    in_env = list_pb2.Filter(function=list_pb2.Filter.CONTAINS, field="name", values=["cp_calc."])
    assert names(in_env, sort=newest) == ["cp_calc.add@v2", "cp_calc.total@v1"]

    with pytest.raises(ConnectError) as err:
        names(list_pb2.Filter(function=list_pb2.Filter.EQUAL, field="owner", values=["x"]))
    assert err.value.code == Code.INVALID_ARGUMENT and "unknown field 'owner'" in err.value.message


# -- transport -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "insecure", "url"),
    [
        ("dns:///127.0.0.1:8090", True, "http://127.0.0.1:8090"),
        ("dns:///flyte.example.com:443", False, "https://flyte.example.com:443"),
        ("127.0.0.1:8090", True, "http://127.0.0.1:8090"),
        ("flyte.example.com", False, "https://flyte.example.com"),
        ("http://127.0.0.1:8090/", False, "http://127.0.0.1:8090"),
        ("https://flyte.example.com/api", True, "https://flyte.example.com/api"),
    ],
)
def test_endpoint_forms(endpoint: str, insecure: bool, url: str) -> None:
    assert normalize_endpoint(endpoint, insecure=insecure) == url


@pytest.mark.parametrize("endpoint", ["ftp://flyte.example.com", "dns:///", ""])
def test_bad_endpoint_is_a_usage_error(endpoint: str) -> None:
    with pytest.raises(UsageError, match="--endpoint"):
        RemoteControlPlane(endpoint)


def test_unreachable_control_plane_is_one_clear_error_after_bounded_retries() -> None:
    port = free_port()
    client = RemoteControlPlane(f"http://127.0.0.1:{port}", attempts=3, backoff_s=0.01)
    with pytest.raises(ControlPlaneError) as err:
        client.list_versions(PROJECT, DOMAIN, "", "cp_calc.add")
    message = str(err.value)
    assert message.startswith(f"control plane http://127.0.0.1:{port} is unreachable")
    assert message.endswith("after 3 attempts to list versions of task cp_calc.add")
    assert "\n" not in message


def test_client_retries_until_the_control_plane_answers(tmp_path: Path, calc_specs: CalcSpecs) -> None:
    port = free_port()
    ready = threading.Event()
    servers: list[ControlPlaneServer] = []

    def start_late() -> None:
        ready.wait()
        server = ControlPlaneServer(TaskStore(tmp_path / "late"), "127.0.0.1", port, projects=TEST_PROJECTS)
        server.start()
        servers.append(server)

    starter = threading.Thread(target=start_late)
    starter.start()
    # The server starts only once the client is already retrying; the retry budget (~13 s) is far
    # more than a start takes.
    timer = threading.Timer(0.2, ready.set)
    timer.start()
    try:
        client = RemoteControlPlane(f"http://127.0.0.1:{port}", attempts=8, backoff_s=0.1)
        assert deploy(client, calc_specs()["cp_calc.add"]) == "registered"
    finally:
        ready.set()
        starter.join()
        for server in servers:
            server.stop()


def test_an_endpoint_that_is_not_a_flyte_control_plane_is_named(tmp_path: Path) -> None:
    class NoSuchRoute(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoSuchRoute)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ControlPlaneError) as err:
            RemoteControlPlane(url).list_tasks(PROJECT, DOMAIN, "")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert str(err.value).startswith(f"{url} does not serve flyteidl2 TaskService")
    assert "is --endpoint a Flyte 2 control plane?" in str(err.value)


def test_bearer_token_is_sent_and_checked(tmp_path: Path, calc_specs: CalcSpecs) -> None:
    with ControlPlaneServer(
        TaskStore(tmp_path / "auth"), "127.0.0.1", 0, api_key="s3cret", projects=TEST_PROJECTS
    ) as server:
        with pytest.raises(ControlPlaneError) as err:
            deploy(RemoteControlPlane(server.url), calc_specs()["cp_calc.add"])
        assert "UNAUTHENTICATED" in str(err.value) and "--api-key" in str(err.value)
        assert (
            deploy(RemoteControlPlane(server.url, api_key="s3cret"), calc_specs()["cp_calc.add"])
            == "registered"
        )


def test_embedded_control_plane_keeps_its_state_between_runs(tmp_path: Path, calc_specs: CalcSpecs) -> None:
    with EmbeddedControlPlane(tmp_path / ".flyte-deploy") as plane:
        plane.create_project(PROJECT, "")
        assert deploy(plane, calc_specs()["cp_calc.add"]) == "registered"
    assert (tmp_path / ".flyte-deploy" / DB_NAME).is_file()
    # The state outlives the run: the next one-shot deploy sees the task.
    with EmbeddedControlPlane(tmp_path / ".flyte-deploy") as again:
        assert deploy(again, calc_specs()["cp_calc.add"]) == "unchanged"
    # The same state served over HTTP answers the same.
    with ControlPlaneServer.at(tmp_path / ".flyte-deploy") as server:
        assert deploy(RemoteControlPlane(server.url), calc_specs()["cp_calc.add"]) == "unchanged"


def test_state_inside_a_checkout_leaves_the_tree_clean(
    make_git_repo: Callable[..., GitRepo], calc_specs: CalcSpecs
) -> None:
    """`.flyte-deploy/` under the project must not make the next deploy's tree dirty."""
    repo = make_git_repo(files={"app.py": "print(1)\n"})
    with EmbeddedControlPlane(repo.path / ".flyte-deploy") as plane:
        plane.create_project(PROJECT, "")
        deploy(plane, calc_specs()["cp_calc.add"])
    assert (repo.path / ".flyte-deploy" / DB_NAME).is_file()
    assert not repo.is_dirty()


# -- concurrency -----------------------------------------------------------------------------

_DEPLOYER_SCRIPT = textwrap.dedent(
    """
    import base64, json, sys, time
    from pathlib import Path
    from flyteidl2.task.task_definition_pb2 import TaskSpec
    from deployer.controlplane.embedded import EmbeddedControlPlane

    state, specs_file, go = sys.argv[1:4]
    specs = [TaskSpec.FromString(base64.b64decode(s)) for s in json.loads(Path(specs_file).read_text())]
    with EmbeddedControlPlane(Path(state)) as client:
        client.create_project("acme", "")
        print("ready", flush=True)
        while not Path(go).exists():  # start together with the other process
            time.sleep(0.001)
        outcomes = []
        for spec in specs:
            outcomes.append(client.deploy_task(spec))
    print(json.dumps(outcomes), flush=True)
    """
)


def test_two_processes_deploying_the_same_version_at_once(tmp_path: Path, calc_specs: CalcSpecs) -> None:
    """Two one-shot deploys sharing one state dir, each with its own embedded control plane."""
    add = calc_specs("1.0.0")["cp_calc.add"]
    specs = [with_version(add, "1.0.0")] + [_renamed(add, f"cp_calc.t{i:02d}") for i in range(39)]
    specs_file = tmp_path / "specs.json"
    specs_file.write_text(json.dumps([base64.b64encode(canonical_bytes(s)).decode() for s in specs]))
    state, go = tmp_path / "shared-state", tmp_path / "go"
    # No state yet: both processes also create the database at the same moment.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DEPLOYER_SCRIPT, str(state), str(specs_file), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr and p.stderr.read()
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    for i, spec in enumerate(specs):
        assert sorted(r[i] for r in results) == ["registered", "unchanged"], spec.task_template.id.name
    store = TaskStore(state)
    assert store.count() == len(specs)
    with sqlite3.connect(state / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    for spec in specs:
        stored = store.get(TaskKey("", PROJECT, DOMAIN, spec.task_template.id.name, "1.0.0"))
        assert stored is not None and stored.digest == spec_digest(spec)


def test_concurrent_deploys_into_one_server_register_once(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    add = calc_specs()["cp_calc.add"]
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        client = RemoteControlPlane(controlplane.url)
        barrier.wait()
        outcomes.append(deploy(client, add))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["registered"] + ["unchanged"] * 7
    assert controlplane.store.count() == 1


# -- preview cleanup (no delete RPC in flyteidl2: a local call on the store) ----------------


def test_preview_cleanup_deletes_a_domain_or_a_version(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    for spec in calc_specs("pr-7-abc", domain="pr-7").values():
        deploy(client, spec)
    deploy(client, calc_specs("pr-7-def", domain="pr-7")["cp_calc.add"])
    deploy(client, calc_specs("v1")["cp_calc.add"])
    plane = EmbeddedControlPlane(controlplane.store.state_dir)

    # Single tenant: whatever org the caller names, the preview's tasks are found.
    assert plane.delete_versions(PROJECT, "pr-7", "acme-org", "pr-7-abc").tasks == 2
    assert client.list_versions(PROJECT, "pr-7", "", "cp_calc.add") == ["pr-7-def"]
    assert plane.delete_versions(PROJECT, "pr-7", "", "").tasks == 1
    assert client.list_tasks(PROJECT, "pr-7", "") == []
    assert client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v1") is not None


# -- `flyte-deploy serve` --------------------------------------------------------------------


def test_serve_runs_until_sigterm_and_logs_one_line_per_request(
    tmp_path: Path, start_serve: StartServe, calc_specs
) -> None:
    served = start_serve(tmp_path / "state", "--project", PROJECT)
    assert served.banner[1].strip() == f"flyte CLI/SDK endpoint: dns:///127.0.0.1:{served.port} --insecure"
    client = RemoteControlPlane(served.endpoint, insecure=True)
    assert deploy(client, calc_specs()["cp_calc.add"]) == "registered"
    assert client.get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v2") is None

    assert served.stop() == 0
    log = served.log().splitlines()
    # "<timestamp> <client> <RPC> <subject> -> <code>[: <message>] (<ms> ms)"
    rpc_lines = [line.split(" ", 2)[2] for line in log if " 127.0.0.1 " in line]
    assert rpc_lines[0].startswith("DeployTask acme/staging/cp_calc.add@v1 -> OK (")
    assert rpc_lines[1].startswith("GetTaskDetails acme/staging/cp_calc.add@v2 -> NOT_FOUND: task ")
    assert len(rpc_lines) == 2
    assert log[-1] == "control plane stopped"

    # State persists across restarts.
    again = start_serve(tmp_path / "state")
    assert RemoteControlPlane(again.url).get_task(PROJECT, DOMAIN, "", "cp_calc.add", "v1") is not None


def test_serve_on_a_busy_port_is_one_clear_error(controlplane: ControlPlaneServer, tmp_path: Path) -> None:
    result = _serve_cli("--port", str(controlplane.port), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{controlplane.port}: Address already in use"
    ]


def test_serve_refuses_a_state_file_that_is_not_ours(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    result = _serve_cli("--port", "0", "--state-dir", str(state))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: control plane state {state / DB_NAME}: file is not a database"
    ]


# -- helpers ---------------------------------------------------------------------------------


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployer", "serve", *args], capture_output=True, text=True, timeout=60
    )


def _task_id(name: str, version: str) -> td.TaskIdentifier:
    return td.TaskIdentifier(org="", project=PROJECT, domain=DOMAIN, name=name, version=version)


def _project() -> identifier_pb2.ProjectIdentifier:
    return identifier_pb2.ProjectIdentifier(organization="", name=PROJECT, domain=DOMAIN)


def _renamed(spec: td.TaskSpec, name: str) -> td.TaskSpec:
    clone = td.TaskSpec()
    clone.CopyFrom(spec)
    clone.task_template.id.name = name
    return clone


def test_a_version_prefix_ending_in_a_number_leaves_longer_numbers_alone(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    for version in ("pr1-abc", "pr12-abc", "pr100-abc", "pr1"):
        deploy(client, calc_specs(version)["cp_calc.add"])
    plane = EmbeddedControlPlane(controlplane.store.state_dir)
    assert plane.delete_versions(PROJECT, DOMAIN, "", "pr1").versions == ("pr1", "pr1-abc")
    assert client.list_versions(PROJECT, DOMAIN, "", "cp_calc.add") == ["pr100-abc", "pr12-abc"]


def test_serve_deletes_a_previews_versions_through_its_preview_service(
    controlplane: ControlPlaneServer, calc_specs: CalcSpecs
) -> None:
    client = RemoteControlPlane(controlplane.url)
    for version in ("pr-7-abc", "pr-70-abc", "v1"):
        deploy(client, calc_specs(version)["cp_calc.add"])
    deleted = client.delete_versions(PROJECT, DOMAIN, "", "pr-7-")
    assert (deleted.versions, deleted.tasks) == (("pr-7-abc",), 1)
    assert deleted.images == (calc_specs("x")["cp_calc.add"].task_template.container.image,)
    assert client.list_versions(PROJECT, DOMAIN, "", "cp_calc.add") == ["v1", "pr-70-abc"]


def test_a_plane_without_the_preview_service_keeps_its_versions(tmp_path: Path) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from flyteidl2.task.task_service_connect import TaskServiceWSGIApplication

    from deployer.controlplane.base import Unsupported
    from deployer.controlplane.task_service import TaskService

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    # A Connect server that serves TaskService alone, as a Flyte backend does.
    tasks = TaskServiceWSGIApplication(TaskService(TaskStore(tmp_path / "plain")))

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        # wsgiref hands over the raw socket: give the application just the body.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
        return tasks(environ, start_response)

    with make_server("127.0.0.1", 0, app, handler_class=Quiet) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            with pytest.raises(Unsupported, match="cannot delete task versions"):
                RemoteControlPlane(f"http://127.0.0.1:{httpd.server_port}").delete_versions(
                    PROJECT, DOMAIN, "", "pr-1-"
                )
        finally:
            httpd.shutdown()

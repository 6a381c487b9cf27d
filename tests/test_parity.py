"""Parity with `flyte deploy`: one repository deployed to one `flyte-deploy serve` by the real flyte CLI and
by ours, each into its own domain, and what the control plane stored compared: task specs, triggers
(schedules, time zones, inputs, activation) and app specs are equal apart from the domain and the two
encodings where flyte reads process state (the `--image-cache` argument is compared decoded; flyte's
`_F_SYS_PATH` repeats entries, ours does not).

With `--copy-style none` nothing is uploaded, so the real CLI needs no data proxy. The app served by its
`@server` function (`report-api`) only runs from a code bundle (flyte-deploy refuses it without one), so
its parity is the bundle-mode test, which needs the data proxy the real CLI uploads bundles through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flyte._internal.image_cache import ImageCache
from flyteidl2.app import app_definition_pb2 as ad
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.trigger import trigger_definition_pb2 as tdef
from google.protobuf.json_format import MessageToDict

from deployer.controlplane.remote import RemoteControlPlane
from deployer.controlplane.store import TaskKey
from tests.fixtures.controlplane import StartServe
from tests.fixtures.flyte_peer import flyte_cli

BASE = "127.0.0.1:5000/parity/base@sha256:" + "e" * 64
VERSION = "1.0.0"
THEIRS, OURS = "parity-flyte", "parity-ours"
TASKS = ("reports.adhoc", "reports.build_report")
TRIGGERS = (
    ("reports.adhoc", "on-demand"),
    ("reports.build_report", "nightly"),
    ("reports.build_report", "hourly-refresh"),
)


@pytest.fixture
def parity_repo(project_repo: Any) -> Any:
    """The scheduled project on one mapped image (`--image base=URI`), so neither tool builds anything."""
    repo = project_repo("scheduled")
    source = (repo.path / "workflows.py").read_text()
    mapped = source.replace(
        "image = flyte.Image.from_debian_base(python_version=(3, 11))",
        'image = flyte.Image.from_ref_name("base")',
    )
    assert mapped != source
    repo.commit("one mapped image", files={"workflows.py": mapped})
    return repo


def _flyte(repo: Any, served: Any, home: Path, domain: str, *args: str) -> None:
    done = flyte_cli(
        repo.path,
        "--endpoint",
        served.endpoint,
        "--insecure",
        "deploy",
        "--project",
        "flytesnacks",
        "--domain",
        domain,
        "--image",
        f"base={BASE}",
        "--version",
        VERSION,
        *args,
        home=home,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _ours(flyte_deploy: Any, repo: Any, served: Any, org: str | None, *args: str) -> Any:
    """Our deploy of `args`; with `org` None, the org is derived from the endpoint as the SDK derives it."""
    result = flyte_deploy(
        "deploy",
        *args,
        "--endpoint",
        served.url,
        "--domain",
        OURS,
        *(("--org", org) if org is not None else ()),
        "--image",
        f"base={BASE}",
        "--version",
        VERSION,
        "--json",
        cwd=repo.path,
    )
    assert result.code == 0, result.stderr
    return result


def _container(container: Any) -> None:
    """Decode `--image-cache` (sorted lookup) and drop `_F_SYS_PATH`, in the command or the args."""
    for field in (container.command, container.args):
        values = list(field)
        if "--image-cache" in values:
            at = values.index("--image-cache") + 1
            values[at] = json.dumps(ImageCache.from_transport(values[at]).image_lookup, sort_keys=True)
            del field[:]
            field.extend(values)
    kept = [kv for kv in container.env if kv.key != "_F_SYS_PATH"]
    del container.env[:]
    container.env.extend(kept)


def _task(spec: td.TaskSpec) -> dict[str, Any]:
    clone = td.TaskSpec()
    clone.CopyFrom(spec)
    clone.task_template.id.domain = "<domain>"
    _container(clone.task_template.container)
    return MessageToDict(clone)


def _trigger(details: tdef.TriggerDetails | None) -> dict[str, Any]:
    assert details is not None
    return {
        "spec": MessageToDict(details.spec),
        "automation": MessageToDict(details.automation_spec),
        "description": details.description,
    }


def _app(app: ad.App | None, *, bundle: str | None = None) -> dict[str, Any]:
    assert app is not None
    spec = ad.Spec()
    spec.CopyFrom(app.spec)
    _container(spec.container)
    text = json.dumps(MessageToDict(spec), sort_keys=True)
    for domain in (THEIRS, OURS):
        text = text.replace(f'"{domain}"', '"<domain>"')
    if bundle is not None:
        text = text.replace(bundle, "<bundle>")
    return json.loads(text)


def test_tasks_triggers_and_apps_stored_by_flyte_deploy_and_by_us_are_equal(
    parity_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    served = start_serve(tmp_path / "state")
    _flyte(parity_repo, served, tmp_path / "home", THEIRS, "--copy-style", "none", "workflows.py", "reports")
    store = served_store(served)
    org = store.get(TaskKey("", "flytesnacks", THEIRS, TASKS[0], VERSION)).spec.task_template.id.org  # type: ignore[union-attr]
    _ours(flyte_deploy, parity_repo, served, org, "workflows.py", "reports", "--copy-style", "none")

    for name in TASKS:
        theirs = store.get(TaskKey("", "flytesnacks", THEIRS, name, VERSION))
        ours = store.get(TaskKey("", "flytesnacks", OURS, name, VERSION))
        assert theirs is not None and ours is not None, name
        assert _task(ours.spec) == _task(theirs.spec), name
        assert ours.spec.task_template.container.image == BASE

    plane = RemoteControlPlane(served.url)
    for task, name in TRIGGERS:
        theirs = _trigger(plane.get_trigger("flytesnacks", THEIRS, org, task, name))
        ours = _trigger(plane.get_trigger("flytesnacks", OURS, org, task, name))
        assert ours == theirs, (task, name)
    nightly = _trigger(plane.get_trigger("flytesnacks", OURS, org, "reports.build_report", "nightly"))
    assert nightly["automation"]["schedule"]["cron"] == {
        "expression": "0 2 * * *",
        "timezone": "America/New_York",
    }
    assert nightly["spec"]["active"] is True and nightly["spec"]["taskVersion"] == VERSION

    theirs_app = plane.get_app("flytesnacks", THEIRS, org, "report-docs")
    ours_app = plane.get_app("flytesnacks", OURS, org, "report-docs")
    assert _app(ours_app) == _app(theirs_app)
    assert ours_app is not None and ours_app.spec.container.image == BASE


def served_store(served: Any) -> Any:
    from deployer.controlplane.store import TaskStore

    return TaskStore(served.state_dir)


def test_in_bundle_mode_the_app_served_by_its_server_function_is_equal_too(
    parity_repo, flyte_deploy, start_serve: StartServe, tmp_path: Path
) -> None:
    served = start_serve(tmp_path / "state")
    _flyte(
        parity_repo,
        served,
        tmp_path / "home",
        THEIRS,
        "--copy-style",
        "loaded_modules",
        "--all",
        "workflows.py",
    )
    plane = RemoteControlPlane(served.url)
    theirs = plane.get_app("flytesnacks", THEIRS, "", "report-api")
    assert theirs is not None
    org = theirs.metadata.id.org
    # No --org: the app server's command carries the org derived from the endpoint, as the SDK's does.
    result = _ours(flyte_deploy, parity_repo, served, None, "workflows.py", "--all", "--mode", "bundle")
    ours = plane.get_app("flytesnacks", OURS, org, "report-api")
    assert ours is not None
    assert _app(ours, bundle=result.json["artifacts"]["bundle"]["uri"]) == _app(
        theirs, bundle=theirs.metadata.code_bundle_uri
    )

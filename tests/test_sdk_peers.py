"""Peers that are not ours, against our embedded control plane: the real `flyte` CLI deploys to it,
and the flyte SDK's remote API reads back what we deployed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from flyte._internal.image_cache import ImageCache
from flyteidl2.task import task_definition_pb2 as td

from deployer.controlplane.remote import RemoteControlPlane
from deployer.controlplane.serialize import task_specs
from deployer.controlplane.server import ControlPlaneServer
from deployer.controlplane.specs import canonical_bytes, spec_differences
from deployer.controlplane.store import TaskKey
from tests.fixtures.controlplane import BASE_IMAGE, CALC_IMAGE, CALC_PROJECT, MakeProject

PROJECT, DOMAIN = "acme", "staging"
FLYTE = Path(sys.executable).with_name("flyte")
PEER_TIMEOUT_S = 180


def peer_env(home: Path) -> dict[str, str]:
    """No ~/.flyte config, no FLYTE_* settings from the machine: only what the command line says."""
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UNION", "_F_"))}
    env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"})
    return env


def run_flyte_cli(project_root: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(FLYTE), "--endpoint", f"dns:///127.0.0.1:{port}", "--insecure", "deploy", *args]
    return subprocess.run(
        command,
        cwd=project_root,
        env=peer_env(project_root.parent / "home"),
        capture_output=True,
        text=True,
        timeout=PEER_TIMEOUT_S,
    )


def comparable(spec: td.TaskSpec) -> td.TaskSpec:
    """`spec` minus the two encodings where flyte reads process state (see serialize.py): the
    `--image-cache` argument becomes its decoded lookup, sorted; `_F_SYS_PATH` is dropped."""
    clone = td.TaskSpec()
    clone.CopyFrom(spec)
    container = clone.task_template.container
    args = list(container.args)
    at = args.index("--image-cache") + 1
    args[at] = json.dumps(ImageCache.from_transport(args[at]).image_lookup, sort_keys=True)
    del container.args[:]
    container.args.extend(args)
    kept = [kv for kv in container.env if kv.key != "_F_SYS_PATH"]
    del container.env[:]
    container.env.extend(kept)
    return clone


def test_real_flyte_cli_deploys_to_our_control_plane(
    controlplane: ControlPlaneServer, flyte_project: MakeProject
) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    images = ("--image", f"calc={CALC_IMAGE}", "--image", f"base={BASE_IMAGE}")
    deploy_args = ("--project", PROJECT, "--domain", DOMAIN, "--copy-style", "none", "--version", "1.0.0")

    result = run_flyte_cli(project.root, controlplane.port, *deploy_args, *images, "app.py", "calc")
    assert result.returncode == 0, result.stdout + result.stderr

    # `calc` depends on `base`: flyte deployed all three tasks, and they are in our store.
    store = controlplane.store
    names = {"cp_calc.add": CALC_IMAGE, "cp_calc.total": CALC_IMAGE, "cp_base.double": BASE_IMAGE}
    for name, image in names.items():
        stored = store.get(TaskKey("", PROJECT, DOMAIN, name, "1.0.0"))
        assert stored is not None, name
        assert stored.spec.task_template.container.image == image
    assert store.count() == 3

    # What flyte sent is what we would have sent for the same tasks.
    org = store.get(TaskKey("", PROJECT, DOMAIN, "cp_calc.add", "1.0.0")).spec.task_template.id.org  # type: ignore[union-attr]
    for env, image in ((project.module.calc, CALC_IMAGE), (project.module.base, BASE_IMAGE)):
        ours = task_specs(
            env,
            version="1.0.0",
            project=PROJECT,
            domain=DOMAIN,
            org=org,
            root_dir=project.root,
            image_uri=image,
            bundle_uri=None,
            bundle_digest=None,
            image_lookup={"cp_base": BASE_IMAGE, "cp_calc": CALC_IMAGE},
        )
        for spec in ours:
            theirs = store.get(TaskKey("", PROJECT, DOMAIN, spec.task_template.id.name, "1.0.0"))
            assert theirs is not None
            assert spec_differences(comparable(theirs.spec), comparable(spec), limit=0) == []

    # Our client reads what the flyte CLI deployed.
    details = RemoteControlPlane(controlplane.url).get_task(PROJECT, DOMAIN, "", "cp_calc.add", "1.0.0")
    assert details is not None and details.spec.short_name == "add"

    # Deploying the same version again: flyte sees ALREADY_EXISTS and skips, successfully.
    again = run_flyte_cli(project.root, controlplane.port, *deploy_args, *images, "app.py", "calc")
    assert again.returncode == 0, again.stdout + again.stderr
    assert store.count() == 3


_SDK_READER = textwrap.dedent(
    """
    import base64, json, sys
    import flyte, flyte.remote

    port, project, domain = sys.argv[1:4]
    flyte.init(endpoint=f"dns:///127.0.0.1:{port}", insecure=True, project=project, domain=domain)
    add = flyte.remote.Task.get(name="cp_calc.add", version="1.0.0").fetch()
    latest = flyte.remote.Task.get(name="cp_calc.add", auto_version="latest").fetch()
    tasks = flyte.remote.Task.listall(project=project, domain=domain)
    listed = sorted(f"{t.name}@{t.version}" for t in tasks)
    print(json.dumps({
        "spec": base64.b64encode(add.pb2.spec.SerializeToString(deterministic=True)).decode(),
        "name": add.name,
        "version": add.version,
        "required_args": list(add.required_args),
        "default_input_args": list(add.default_input_args),
        "latest": latest.version,
        "listed": listed,
    }))
    """
)


def test_flyte_sdk_reads_back_what_we_deployed(
    controlplane: ControlPlaneServer, flyte_project: MakeProject
) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    client = RemoteControlPlane(controlplane.url)
    sent: dict[str, td.TaskSpec] = {}
    for version in ("1.0.0", "1.1.0"):
        for spec in task_specs(
            project.module.calc,
            version=version,
            project=PROJECT,
            domain=DOMAIN,
            org="",
            root_dir=project.root,
            image_uri=CALC_IMAGE,
            bundle_uri="s3://flyte-deploy-test/bundles/abc.tar.gz",
            bundle_digest="sha256:abc",
            image_lookup={"cp_base": BASE_IMAGE},
        ):
            i = spec.task_template.id
            assert client.deploy_task(spec) == "registered"
            sent[f"{i.name}@{version}"] = spec

    home = project.root.parent / "home"
    result = subprocess.run(
        [sys.executable, "-c", _SDK_READER, str(controlplane.port), PROJECT, DOMAIN],
        env=peer_env(home),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=PEER_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    fetched = td.TaskSpec.FromString(base64.b64decode(seen["spec"]))
    expected = sent["cp_calc.add@1.0.0"]
    assert spec_differences(expected, fetched, limit=0) == []
    assert canonical_bytes(fetched) == canonical_bytes(expected)
    assert (seen["name"], seen["version"]) == ("cp_calc.add", "1.0.0")
    assert seen["required_args"] == ["x"] and seen["default_input_args"] == ["y"]
    assert seen["latest"] == "1.1.0"
    assert seen["listed"] == ["cp_calc.add@1.1.0", "cp_calc.total@1.1.0"]

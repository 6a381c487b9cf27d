"""Code bundles through the control plane's data proxy (CreateUploadLocation → signed PUT → native URL in
the spec), with the real `flyte` CLI and our own deploy as clients of `flyte-deploy serve` and of the
embedded plane; then `flyte-deploy run` executes what was deployed, downloading the bundle from where the
data proxy put it."""

from __future__ import annotations

import base64
import hashlib
import logging
import tarfile
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.dataproxy import dataproxy_service_pb2 as dp
from flyteidl2.dataproxy.dataproxy_service_connect import DataProxyServiceClientSync
from google.protobuf import duration_pb2

from deployer.controlplane.remote import RemoteControlPlane
from deployer.controlplane.store import TaskStore
from tests.fixtures.pipeline import CliResult
from tests.fixtures.protocol import Serve, clean_env, flyte_cli

IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
APP = """
    import flyte

    base = flyte.TaskEnvironment(
        name="dp_base", image=flyte.Image.from_ref_name("base"), include=("settings.json",)
    )


    @base.task
    async def double(x: int) -> int:
        import json, pathlib

        factor = json.loads(pathlib.Path(__file__).with_name("settings.json").read_text())["factor"]
        return factor * x
"""


def write_app(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(textwrap.dedent(APP))
    (root / "settings.json").write_text('{"factor": 2}\n')
    return root


def tgz_of(spec_args: list[str]) -> str:
    return spec_args[spec_args.index("--tgz") + 1]


def local_path(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file", uri
    return Path(unquote(parts.path))


def bundle_members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def test_real_flyte_cli_uploads_bundles_through_serve_and_we_run_them(
    tmp_path: Path, serve: Serve, flyte_deploy
) -> None:
    served = serve(tmp_path / "state")
    root = write_app(tmp_path / "project")
    env = clean_env(tmp_path / "home")
    deployed = flyte_cli(
        root,
        "--endpoint", served.endpoint, "--insecure", "deploy",
        "--project", "flytesnacks", "--domain", "development",
        "--copy-style", "loaded_modules", "--image", f"base={IMAGE}",
        "app.py", "base",
        env=env,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    store = TaskStore(served.state_dir)
    [task] = store.latest_tasks(project="flytesnacks", domain="development")
    uri = tgz_of(list(task.spec.task_template.container.args))
    # The bundle is where serve's data proxy put it, under its own storage, with the include= file.
    archive = local_path(uri)
    assert archive.is_relative_to(served.state_dir / "bundles" / "flytesnacks" / "development")
    assert {"app.py", "settings.json"} <= bundle_members(archive)
    assert "CreateUploadLocation flytesnacks/development/" in served.log()

    # The real CLI reads it back from serve.
    listed = flyte_cli(
        root, "--endpoint", served.endpoint, "--insecure",
        "get", "task", "-p", "flytesnacks", "-d", "development",
        env=env,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "dp_base.double" in listed.stdout

    # And our runner executes it, downloading the bundle the data proxy stored.
    ran: CliResult = flyte_deploy(
        "run", "dp_base.double", "--endpoint", served.url, "--input", "x=21", "--json",
        "--state-dir", str(tmp_path / "run-state"), cwd=root,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.json["outputs"] == {"o0": 42}
    assert ran.json["bundle_uri"] == uri


def test_our_deploy_without_storage_goes_through_serves_data_proxy(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy
) -> None:
    served = serve(tmp_path / "state")
    repo = project_repo("flat")
    result = flyte_deploy(
        "deploy", "workflows.py", "env", "--mode", "bundle", "--endpoint", served.url, "--json", cwd=repo.path
    )
    assert result.code == 0, result.stderr
    bundle = result.json["artifacts"]["bundle"]
    stored = local_path(bundle["uri"])
    # One content, one object: named by its sha256 under the project/domain of serve's storage.
    assert (
        stored
        == served.state_dir
        / "bundles"
        / "flytesnacks"
        / "development"
        / "bundles"
        / f"{bundle['digest']}.tar.gz"
    )
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == bundle["digest"]
    # Nothing was written to the client's own state dir but its receipt.
    assert not (repo.path / ".flyte-deploy" / "bundles").exists()

    ran = flyte_deploy(
        "run",
        "flat.average",
        "--endpoint",
        served.url,
        "--input",
        "values=[1, 2, 3]",
        "--json",
        cwd=repo.path,
    )
    assert ran.code == 0, ran.stderr
    assert ran.json["outputs"] == {"o0": 2.0}


@pytest.mark.stack
def test_serve_with_s3_storage_hands_out_presigned_urls(
    tmp_path: Path, serve: Serve, project_repo, flyte_deploy, stack_env, s3_client, s3_bucket
) -> None:
    prefix = f"dataproxy-{tmp_path.name}"
    s3_env = {**stack_env, "FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]}
    served = serve(tmp_path / "state", "--storage", f"s3://{s3_bucket}/{prefix}", env=s3_env)
    root = write_app(tmp_path / "project")
    cli = flyte_cli(
        root,
        "--endpoint", served.endpoint, "--insecure", "deploy",
        "--project", "flytesnacks", "--domain", "development",
        "--copy-style", "loaded_modules", "--image", f"base={IMAGE}",
        "app.py", "base",
        env=clean_env(tmp_path / "home"),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    repo = project_repo("flat")
    ours = flyte_deploy(
        "deploy", "workflows.py", "env", "--mode", "bundle", "--endpoint", served.url, "--json",
        cwd=repo.path, env=s3_env,
    )  # fmt: skip
    assert ours.code == 0, ours.stderr
    bundle = ours.json["artifacts"]["bundle"]
    key = f"{prefix}/flytesnacks/development/bundles/{bundle['digest']}.tar.gz"
    assert bundle["uri"] == f"s3://{s3_bucket}/{key}"
    body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == bundle["digest"]
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{prefix}/flytesnacks/development/")
    assert listed["KeyCount"] == 2  # flyte's bundle and ours

    ran = flyte_deploy(
        "run", "flat.average", "--endpoint", served.url, "--input", "values=[2, 4]", "--json",
        cwd=repo.path, env=s3_env,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.json["outputs"] == {"o0": 3.0}


def test_embedded_plane_keeps_bundles_by_content(project_repo, flyte_deploy) -> None:
    repo = project_repo("flat")
    first = flyte_deploy("deploy", "workflows.py", "env", "--mode", "bundle", "--json", cwd=repo.path)
    assert first.code == 0, first.stderr
    again = flyte_deploy(
        "deploy", "workflows.py", "env", "--mode", "bundle", "--domain", "staging", "--json", cwd=repo.path
    )
    assert again.code == 0, again.stderr
    one, two = first.json["artifacts"]["bundle"], again.json["artifacts"]["bundle"]
    assert one["digest"] == two["digest"]
    bundles = repo.path / ".flyte-deploy" / "bundles" / "flytesnacks"
    assert local_path(one["uri"]) == bundles / "development" / "bundles" / f"{one['digest']}.tar.gz"
    assert local_path(two["uri"]) == bundles / "staging" / "bundles" / f"{one['digest']}.tar.gz"
    assert sorted(p.name for p in bundles.rglob("*.tar.gz")) == [f"{one['digest']}.tar.gz"] * 2


# ------------------------------------------------------------------------------------------ refusals


def upload_request(**fields: object) -> dp.CreateUploadLocationRequest:
    data = b"bundle bytes"
    values: dict[str, object] = {
        "project": "flytesnacks",
        "domain": "development",
        "filename": "x.tar.gz",
        "content_md5": hashlib.md5(data).digest(),
        "expires_in": duration_pb2.Duration(seconds=600),
    }
    values.update(fields)
    return dp.CreateUploadLocationRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"project": "nope"}, Code.NOT_FOUND, "project 'nope' not found"),
        ({"expires_in": duration_pb2.Duration(seconds=7200)}, Code.INVALID_ARGUMENT, "expires_in: 7200s"),
        ({"filename": "../../etc/passwd"}, Code.INVALID_ARGUMENT, "upload path component"),
        ({"content_md5": b"short"}, Code.INVALID_ARGUMENT, "content_md5"),
        ({"content_length": 3 << 30}, Code.INVALID_ARGUMENT, "exceeds the maximum"),
    ],
)
def test_data_proxy_refuses_bad_upload_requests(controlplane, fields, code, message) -> None:
    client = DataProxyServiceClientSync(controlplane.url)
    with pytest.raises(ConnectError) as err:
        client.create_upload_location(upload_request(**fields))
    assert err.value.code == code
    assert message in err.value.message


def test_signed_upload_urls_cannot_be_reused_for_other_bytes_or_keys(controlplane) -> None:
    data = b"bundle bytes"
    location = DataProxyServiceClientSync(controlplane.url).create_upload_location(upload_request())
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()

    def put(url: str, body: bytes, digest: str = md5) -> tuple[int, str]:
        request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-MD5": digest})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    other = b"other bytes!"
    assert put(location.signed_url, other, base64.b64encode(hashlib.md5(other).digest()).decode())[0] == 400
    assert put(location.signed_url, other)[0] == 400  # announced the signed MD5, sent other bytes
    assert put(location.signed_url.replace("x.tar.gz", "y.tar.gz"), data)[0] == 403
    assert put(location.signed_url.replace("expires=", "expires=1"), data)[0] == 403
    assert not local_path(location.native_url).exists()
    assert put(location.signed_url, data) == (200, "")
    assert local_path(location.native_url).read_bytes() == data


def test_our_client_asks_select_cluster_before_the_data_proxy(controlplane, caplog) -> None:
    caplog.set_level(logging.INFO, logger="deployer.controlplane.server")
    data = b"x" * 1000
    with RemoteControlPlane(controlplane.url) as plane:
        for _ in range(2):
            location = plane.upload_location(
                project="acme", domain="staging", org="", filename="b.tar.gz", md5=hashlib.md5(data).digest(),
                size=len(data), root="bundles",
            )  # fmt: skip
    assert (
        location.native_url
        == (controlplane.store.state_dir / "bundles/acme/staging/bundles/b.tar.gz").as_uri()
    )
    calls = [r.getMessage().split(" ", 2)[1] for r in caplog.records]
    # Routed once (as the SDK caches the route per project/domain), then both uploads.
    assert calls == ["SelectCluster", "CreateUploadLocation", "CreateUploadLocation"]

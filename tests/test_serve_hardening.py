"""`flyte-deploy serve` under hostile or heavy traffic, as a separate process: request bodies bounded before
they are read or decompressed (and before auth), spec and field limits, log lines that request content
cannot forge or blow up, a restart on the same port at once, and a listen backlog for many clients."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import gzip
import socket
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.core import literals_pb2
from flyteidl2.task import task_definition_pb2 as td
from flyteidl2.task import task_service_pb2 as ts
from flyteidl2.task.task_service_connect import TaskServiceClientSync

from deployer.controlplane.remote import RemoteControlPlane
from deployer.controlplane.serialize import task_specs
from tests.fixtures.controlplane import BASE_IMAGE, CALC_IMAGE, CALC_PROJECT, MakeProject
from tests.fixtures.protocol import Serve, Served

DEPLOY_PATH = "/flyteidl2.task.TaskService/DeployTask"
MIB = 1 << 20


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of `inflated` zero bytes (about a thousandth of that, compressed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(inflated // MIB)]
    return b"".join(parts) + compressor.flush()


def raw_post(
    served: Served, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on a raw socket (so nothing between us and the server rewrites the body)."""
    head = {
        "Host": f"127.0.0.1:{served.port}",
        "Content-Type": "application/proto",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **(headers or {}),
    }
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(request.encode())
        # Refused from its headers, a body may not be read at all: the server closes instead.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        response = read_all(sock)
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


def read_all(sock: socket.socket) -> bytes:
    """The whole response (the server closes the connection after it)."""
    response = b""
    while chunk := sock.recv(65536):
        response += chunk
    return response


def still_answers(served: Served) -> None:
    client = TaskServiceClientSync(served.url)
    scope = identifier_pb2.ProjectIdentifier(name="flytesnacks", domain="development")
    assert client.list_tasks(ts.ListTasksRequest(project_id=scope)).tasks is not None


@pytest.mark.parametrize("auth", [False, True], ids=["open", "with-api-key"])
def test_a_compressed_body_bomb_neither_inflates_nor_stops_serve(
    tmp_path: Path, serve: Serve, auth: bool
) -> None:
    args = ("--api-key", "k3y") if auth else ()
    served = serve(tmp_path / "state", *args)
    bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros
    assert len(bomb) < 2 * MIB
    baseline = served.peak_rss_kib()

    status, body = raw_post(served, DEPLOY_PATH, bomb, {"Content-Encoding": "gzip"})
    peak = served.peak_rss_kib()
    print(f"bomb ({'api key' if auth else 'open'}): peak RSS {baseline} KiB before, {peak} KiB after")
    assert peak < 400 * 1024
    if auth:  # refused from its headers: never decompressed
        assert status == 401 and b"missing bearer token" in body
    else:
        assert status in (400, 413, 429)
        assert b"inflates to more than" in body
    # With a valid key, still bounded: decompression stops at the limit.
    if auth:
        status, body = raw_post(
            served, DEPLOY_PATH, bomb, {"Content-Encoding": "gzip", "Authorization": "Bearer k3y"}
        )
        assert b"inflates to more than" in body
        assert served.peak_rss_kib() < 400 * 1024

    client = RemoteControlPlane(served.url, api_key="k3y" if auth else None)
    assert client.has_project("flytesnacks", "") is True
    assert "Traceback" not in served.log()


def test_a_body_over_the_limit_is_refused_from_its_length(tmp_path: Path, serve: Serve) -> None:
    served = serve(tmp_path / "state")
    head = (
        f"POST {DEPLOY_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n"
        f"Content-Length: {200 * MIB}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head.encode())  # and not one byte of the 200 MiB it announces
        response = read_all(sock)
    assert response.startswith(b"HTTP/1.0 413 ")
    assert b"exceeds the limit of 8388608 bytes" in response
    chunked = (
        f"POST {DEPLOY_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(chunked.encode())
        assert read_all(sock).startswith(b"HTTP/1.0 411 ")
    still_answers(served)


def test_specs_and_fields_are_bounded(tmp_path: Path, serve: Serve, flyte_project: MakeProject) -> None:
    served = serve(tmp_path / "state")
    client = TaskServiceClientSync(served.url)
    project = flyte_project({"app.py": CALC_PROJECT})
    [spec, *_] = task_specs(
        project.module.calc,
        version="v1",
        project="flytesnacks",
        domain="development",
        org="",
        root_dir=project.root,
        image_uri=CALC_IMAGE,
        bundle_uri=None,
        bundle_digest=None,
        image_lookup={"cp_base": BASE_IMAGE},
    )
    assert client.deploy_task(ts.DeployTaskRequest(task_id=_task_id(spec), spec=spec)) is not None

    def request(value: str) -> ts.DeployTaskRequest:
        big = td.TaskSpec()
        big.CopyFrom(spec)
        big.task_template.container.env.append(literals_pb2.KeyValuePair(key="BIG", value=value))
        big.task_template.id.version = "v2"
        return ts.DeployTaskRequest(task_id=_task_id(big), spec=big)

    with pytest.raises(ConnectError) as field:
        client.deploy_task(request("x" * (100 << 10)))
    assert field.value.code == Code.INVALID_ARGUMENT
    assert field.value.message.startswith("spec.task_template.container.env[")
    assert "more than the 65536 allowed in one field" in field.value.message

    # 50 MB: over the request limit whether compressed (it inflates past it) or not.
    huge = request("y" * 50_000_000).SerializeToString()
    assert raw_post(served, DEPLOY_PATH, huge)[0] == 413
    _, body = raw_post(served, DEPLOY_PATH, gzip.compress(huge), {"Content-Encoding": "gzip"})
    assert b"inflates to more than" in body
    still_answers(served)


def _task_id(spec: td.TaskSpec) -> td.TaskIdentifier:
    i = spec.task_template.id
    return td.TaskIdentifier(org=i.org, project=i.project, domain=i.domain, name=i.name, version=i.version)


def test_log_lines_cannot_be_forged_or_amplified(tmp_path: Path, serve: Serve) -> None:
    served = serve(tmp_path / "state")
    client = TaskServiceClientSync(served.url)
    forged = "v1\n2030-01-01T00:00:00 127.0.0.1 DeployTask forged/entry -> OK"
    task_id = td.TaskIdentifier(project="flytesnacks", domain="development", name="n", version=forged)
    with pytest.raises(ConnectError):
        client.get_task_details(ts.GetTaskDetailsRequest(task_id=task_id))
    scope = identifier_pb2.ProjectIdentifier(name="flytesnacks", domain="development")
    filters = [list_pb2.Filter(field="z" * 300_000, function=list_pb2.Filter.Function.EQUAL, values=["v"])]
    with pytest.raises(ConnectError):
        client.list_tasks(
            ts.ListTasksRequest(project_id=scope, request=list_pb2.ListRequest(filters=filters))
        )
    with pytest.raises(ConnectError) as token:
        client.list_tasks(
            ts.ListTasksRequest(project_id=scope, request=list_pb2.ListRequest(token="9" * 5000))
        )
    assert token.value.code == Code.INVALID_ARGUMENT
    assert served.stop() == 0

    lines = served.log().splitlines()
    assert not [line for line in lines if line.startswith("2030-01-01")]
    assert max(len(line) for line in lines) < 1000
    assert any("\\x0a2030-01-01" in line for line in lines)  # the newline is shown, escaped
    assert "Traceback" not in served.log()


def test_restart_on_the_same_port_at_once(tmp_path: Path, serve: Serve) -> None:
    first = serve(tmp_path / "state")
    port = first.port
    for _ in range(20):  # connections the server closes first: their ends linger in TIME_WAIT
        still_answers(first)
    assert first.stop() == 0
    started = time.monotonic()
    again = serve(tmp_path / "state", port=port)
    print(f"restart on port {port}: listening again {time.monotonic() - started:.2f} s after stop")
    assert again.port == port
    still_answers(again)


def test_many_clients_at_once_are_queued_not_dropped(tmp_path: Path, serve: Serve) -> None:
    served = serve(tmp_path / "state")
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{served.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    backlog = int(listening[2])  # Send-Q of a listening socket: its accept queue
    assert backlog >= 128, listening

    def one(_: int) -> bool:
        still_answers(served)
        return True

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        assert all(pool.map(one, range(300)))


def test_an_unauthenticated_upload_url_cannot_be_forged(tmp_path: Path, serve: Serve) -> None:
    served = serve(tmp_path / "state", "--api-key", "k3y")
    data = b"payload"
    md5 = base64.urlsafe_b64encode(bytes(16)).decode()
    path = f"/flyte-deploy/upload/flytesnacks/development/x/y.tar.gz?expires=9999999999&md5={md5}&sig=00"
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head.encode() + data)
        assert read_all(sock).startswith(b"HTTP/1.0 403 ")
    assert not (served.state_dir / "bundles").exists()

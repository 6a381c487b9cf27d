"""Security: nothing outside root_dir is ever shipped, hostile archives are refused where they are
unpacked, hostile text is inert in summaries and comments and never reaches a shell, secrets never
reach any output, fork pull requests never push or deploy, and the control plane listens on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from deployer.controlplane.embedded import EmbeddedControlPlane
from deployer.controlplane.server import ControlPlaneServer
from tests.fixtures.hardening import (
    cli,
    one_error_line,
    pull_request_event,
    read_tree,
    registered_tasks,
    registry_repositories,
    run_action,
    s3_keys,
    secret_leaks,
)

pytestmark = pytest.mark.stack

REPO = "acme/app"
SENTINEL = "sentinel-3b8e1c-must-never-ship"


# ---------------------------------------------------------------------------------------------- archives


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"") -> tuple[Any, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


HOSTILE = {
    "dotdot": ([_member("../escaped.txt", data=b"pwned\n")], "member '../escaped.txt' has '..' in its path"),
    "absolute-link": (
        [_member("etc", tarfile.SYMTYPE, "/etc"), _member("etc/escaped.txt", data=b"pwned\n")],
        "member 'etc' is a link to the absolute path /etc",
    ),
    "link-chain": (
        [
            _member("here", tarfile.SYMTYPE, "."),
            _member("up", tarfile.SYMTYPE, "here/.."),
            _member("up/escaped.txt", data=b"pwned\n"),
        ],
        "member 'up'",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_running_a_task_refuses_a_hostile_bundle_before_unpacking_it(tiny_repo: Any, case: str) -> None:
    """Whoever can register a task can point it at any archive: `flyte-deploy run` must refuse one that
    writes outside its directory, naming the member, before Flyte's runtime (`tar`) sees it."""
    repo = tiny_repo()
    deployed = cli("deploy", "app.py", "app", "--mode", "bundle", "--json", cwd=repo.path)
    assert deployed.code == 0, deployed.stderr
    state = repo.path / ".flyte-deploy"

    members, message = HOSTILE[case]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in [_member("app.py", data=b"x = 1\n"), *members]:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    blob = buffer.getvalue()
    # Content-addressed like a real bundle, so only the members can give it away.
    hostile = state / "bundles" / f"{hashlib.sha256(blob).hexdigest()}.tar.gz"
    hostile.write_bytes(blob)
    with EmbeddedControlPlane(state) as client:
        version = deployed.json["plan"]["version"]  # type: ignore[index]
        details = client.get_task("flytesnacks", "development", "", "base.double", version)
        assert details is not None
        spec = details.spec
        args = spec.task_template.container.args
        args[list(args).index("--tgz") + 1] = hostile.as_uri()
        spec.task_template.id.version = "hostile"
        for i, arg in enumerate(args):
            if arg == version:
                args[i] = "hostile"
        client.deploy_task(spec)

    run = cli("run", "base.double", "--version", "hostile", "--input", "x=2", cwd=repo.path)
    assert run.code != 0
    error = one_error_line(run.stderr)
    assert f"refusing to extract {hostile.name}: {message}" in error, error
    assert not list(repo.path.parent.rglob("escaped.txt")) and not Path("/etc/escaped.txt").exists()


# ---------------------------------------------------------------------------------------------- root_dir


def test_nothing_outside_root_dir_reaches_a_bundle_or_an_image(
    tiny_repo: Any, docker_client: Any, registry_url: str, unique_repo: str
) -> None:
    repo = tiny_repo(unique=True, **{".flyteignore": "local.env\n"})
    (repo.path / "local.env").write_text(f"TOKEN={SENTINEL}\n")
    outside = repo.path.parent / "outside"
    outside.mkdir()
    (outside / "credentials").write_text(f"{SENTINEL}\n")
    (repo.path / "shared").symlink_to(outside)
    deploy = (
        "deploy", "app.py", "app", "--mode", "container", "--copy-style", "all", "--json",
        "--registry", f"{registry_url}/{unique_repo}",
    )  # fmt: skip

    refused = cli(*deploy, cwd=repo.path)
    assert refused.code != 0
    assert "symlink shared points outside root_dir" in one_error_line(refused.stderr)
    assert registry_repositories(registry_url, unique_repo) == {}

    (repo.path / "shared").unlink()
    done = cli(*deploy, cwd=repo.path)
    assert done.code == 0, done.stderr
    bundle_files = done.json["plan"]["bundle"]["files"]  # type: ignore[index]
    assert "local.env" not in bundle_files and not any(f.startswith(".flyte-deploy") for f in bundle_files)
    [image] = {f"{i['repository']}@{i['digest']}" for i in done.json["artifacts"]["images"]}  # type: ignore[index]
    # The code layer is appended in the registry: the engine holds the image once it is pulled.
    saved = b"".join(docker_client.images.pull(image).save())
    layers = _layer_files(saved)
    assert SENTINEL.encode() not in saved
    # The tiny base holds only /marker: every other file in the image is the project's code.
    shipped = {name for files in layers for name in files if not name.endswith("/")} - {"marker"}
    assert {name.rsplit("/", 1)[-1] for name in shipped} >= {"app.py"}
    assert not any(name.endswith(("local.env", "credentials")) for name in shipped)


def _layer_files(saved: bytes) -> list[list[str]]:
    """The file names in each layer of a `docker save` archive."""
    layers = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                layers.append(inner.getnames())
    return layers


# ---------------------------------------------------------------------------------------------- hostile text

HOSTILE_BRANCH = "feat/<!--$(touch${IFS}PWNED)`x"
HOSTILE_TEXT = (
    "<!-- hide <img src=x onerror=alert(1)> [click](https://evil.example) @acme/admins "
    "${{ secrets.X }} $(touch PWNED)"
)


def _outside_code_spans(markdown: str) -> str:
    """The Markdown with every code span removed: what GitHub would interpret as HTML or Markdown."""
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def _assert_inert(markdown: str) -> None:
    text = _outside_code_spans(markdown)
    for active in ("<!-- hide", "<img", "@acme/admins", "<!--$("):
        assert active not in text, (active, markdown)
    assert not re.search(r"(?<!\\)\]\(https://evil", text), markdown  # an unescaped link
    assert not re.search(r"^#+ Injected", markdown, re.M), markdown


def test_hostile_branch_names_titles_messages_and_errors_are_inert(
    make_git_repo: Any, tiny_base_image: str, github_api: Any, tmp_path: Path, controlplane: Any
) -> None:
    from tests.fixtures.hardening import TINY_APP

    app = TINY_APP.format(base=tiny_base_image)
    repo = make_git_repo("hostile", files={"app.py": app, ".gitignore": ".flyte-deploy/\n"})
    repo.git("checkout", "-q", "-b", HOSTILE_BRANCH)
    repo.commit(f"{HOSTILE_TEXT}\n\n## Injected heading\n<script>alert(1)</script>", allow_empty=True)
    token = github_api.add_token("ghs_hardening_hostile")
    inputs = {"path": "app.py", "all": "true", "mode": "bundle", "github_token": token}
    inputs["endpoint"] = controlplane.url
    base_env = {"GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": github_api.url}

    # A manual run on the hostile branch: its name is the summary's headline.
    ref = f"refs/heads/{HOSTILE_BRANCH}"
    dispatch = {"ref": ref, "repository": {"full_name": REPO, "default_branch": "main"}}
    env = base_env | {"GITHUB_REF": ref, "GITHUB_SHA": repo.head_sha}
    branch = run_action(
        repo.path, "workflow_dispatch", dispatch, runner_dir=tmp_path / "r1", inputs=inputs, env=env
    )
    assert branch.code == 0, branch.log
    assert HOSTILE_BRANCH.split("`")[0] in branch.summary.splitlines()[0]
    _assert_inert(branch.summary)

    # A pull request with a hostile title and branch, whose code fails with a hostile message.
    repo.commit(
        "fail", files={"app.py": app + f"\nraise RuntimeError({HOSTILE_TEXT!r} + '\\n## Injected')\n"}
    )
    github_api.add_pull(REPO, 61, head_sha=repo.head_sha, head_ref=HOSTILE_BRANCH)
    event = pull_request_event(61, repo.head_sha, repo=REPO, title=HOSTILE_TEXT, body=HOSTILE_TEXT)
    event["pull_request"]["head"]["ref"] = HOSTILE_BRANCH  # type: ignore[index]
    env = base_env | {
        "GITHUB_REF": "refs/pull/61/merge",
        "GITHUB_SHA": repo.head_sha,
        "GITHUB_HEAD_REF": HOSTILE_BRANCH,
    }
    failed = run_action(repo.path, "pull_request", event, runner_dir=tmp_path / "r2", inputs=inputs, env=env)
    assert failed.code == 1, failed.log
    assert "RuntimeError" in failed.summary
    _assert_inert(failed.summary)
    [comment] = github_api.repos[REPO].comments
    assert "RuntimeError" in comment.body
    _assert_inert(comment.body)
    # The annotation stays one line: nothing of the message starts a line of its own in the log.
    [error] = [line for line in failed.log.splitlines() if line.startswith("::error")]
    assert "RuntimeError: <!-- hide" in error
    assert not [line for line in failed.log.splitlines() if line.startswith(("## Injected", "<script"))]

    # Nothing was ever handed to a shell.
    assert not list(tmp_path.rglob("PWNED")) and not list(repo.path.rglob("PWNED"))
    assert not (Path.cwd() / "PWNED").exists()


# ---------------------------------------------------------------------------------------------- secrets


def test_secrets_never_reach_any_output_log_or_state(
    tiny_repo: Any,
    start_serve: Any,
    github_api: Any,
    docker_client: Any,
    stack_env: dict[str, str],
    registry_url: str,
    unique_repo: str,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    secrets = {
        "registry password": "regpass-5f1d0c-secret",
        "GitHub token": "ghs_token-7a9b2e-secret",
        "API key": "apikey-c3d4e5-secret",
        "AWS access key": "AKIAHARDENING7F3E9",
        "AWS secret key": "awssecret-0e8d7c-secret",
    }
    repo = tiny_repo(unique=True)
    served = start_serve(None, "--api-key", secrets["API key"])
    github_api.add_token(secrets["GitHub token"])
    github_api.add_pull(REPO, 71, head_sha=repo.head_sha)
    prefix = f"hardening/{unique_repo}"
    inputs = {
        "path": "app.py",
        "all": "true",
        "mode": "container",
        "registry": f"{registry_url}/{unique_repo}",
        "registry_username": "deployer",
        "registry_password": secrets["registry password"],
        "endpoint": served.url,
        "api_key": secrets["API key"],
        "storage": f"s3://{s3_bucket}/{prefix}",
        "github_token": secrets["GitHub token"],
    }
    env = {
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github_api.url,
        "GITHUB_REF": "refs/pull/71/merge",
        "GITHUB_SHA": repo.head_sha,
        "FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": secrets["AWS access key"],
        "AWS_SECRET_ACCESS_KEY": secrets["AWS secret key"],
    }
    event = pull_request_event(71, repo.head_sha, repo=REPO)
    good = run_action(repo.path, "pull_request", event, runner_dir=tmp_path / "good", inputs=inputs, env=env)
    assert good.code == 0, good.log
    assert good.outputs["deployed"] == "true"
    # The one place a secret may appear: the masks that tell the runner to hide it.
    masks = {line for line in good.log.splitlines() if line.startswith("::add-mask::")}
    assert {f"::add-mask::{secrets[k]}" for k in ("registry password", "GitHub token", "API key")} <= masks

    # The same run with a wrong API key fails: error paths are where secrets usually leak.
    refused = run_action(
        repo.path,
        "pull_request",
        event,
        runner_dir=tmp_path / "refused",
        inputs=inputs | {"api_key": "wrong-" + secrets["API key"]},
        env=env,
    )
    assert refused.code != 0 and "UNAUTHENTICATED" in refused.log
    cli_refused = cli(
        "deploy", "app.py", "app", "--mode", "bundle", "--endpoint", served.url,
        "--api-key", "wrong-" + secrets["API key"], cwd=repo.path,
        env={"AWS_SECRET_ACCESS_KEY": secrets["AWS secret key"]},
    )  # fmt: skip
    assert cli_refused.code != 0 and "UNAUTHENTICATED" in one_error_line(cli_refused.stderr)

    [image] = {e["image"] for e in json.loads(good.outputs["environments"])}
    docker_client.images.pull(image)  # appended in the registry: the engine has it once pulled
    texts = {
        "action log": _without_masks(good.log),
        "failed action log": _without_masks(refused.log),
        "CLI output": cli_refused.stdout + cli_refused.stderr,
        "control plane log": served.log(),
        "image config": json.dumps(docker_client.api.inspect_image(image)),
        "image history": json.dumps(docker_client.api.history(image)),
        "GitHub": json.dumps([c.body for c in github_api.repos[REPO].comments])
        + json.dumps([vars(d) for d in github_api.repos[REPO].deployments], default=str),
    }
    for run in (good, refused):
        texts |= {f"runner {path}": text for path, text in read_tree(run.files).items()}
    texts |= {f"state {path}": text for path, text in read_tree(served.state_dir).items()}
    texts |= {f"workspace {path}": text for path, text in read_tree(repo.path / ".flyte-deploy").items()}
    texts |= {
        f"bundle {key}": s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode("latin-1")
        for key in s3_keys(s3_client, s3_bucket, prefix)
    }
    assert secret_leaks(secrets, texts) == []


def _without_masks(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if not line.startswith("::add-mask::"))


# ---------------------------------------------------------------------------------------------- forks


def test_a_fork_pull_request_never_pushes_uploads_or_deploys(
    tiny_repo: Any,
    start_serve: Any,
    github_api: Any,
    stack_env: dict[str, str],
    registry_url: str,
    unique_repo: str,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    repo = tiny_repo(unique=True)
    served = start_serve()
    token = github_api.add_token("ghs_fork_read_only", "read")
    github_api.add_pull(REPO, 81, head_sha=repo.head_sha, head_repo="mallory/app")
    prefix = f"hardening/{unique_repo}"
    inputs = {
        "path": "app.py",
        "all": "true",
        "mode": "container",
        "registry": f"{registry_url}/{unique_repo}",
        "endpoint": served.url,
        "api_key": "flyte-api-key-from-a-misconfigured-workflow",
        "storage": f"s3://{s3_bucket}/{prefix}",
        "github_token": token,
    }
    env = {
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github_api.url,
        "GITHUB_REF": "refs/pull/81/merge",
        "GITHUB_SHA": repo.head_sha,
        "FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"],
    }
    event = pull_request_event(81, repo.head_sha, repo=REPO, head_repo="mallory/app")
    run = run_action(repo.path, "pull_request", event, runner_dir=tmp_path / "fork", inputs=inputs, env=env)

    assert run.code == 0, run.log
    assert run.outputs["trigger"] == "build-only" and run.outputs["deployed"] == "false"
    assert "nothing is pushed or deployed" in run.summary
    assert registry_repositories(registry_url, unique_repo) == {}
    assert s3_keys(s3_client, s3_bucket, prefix) == []
    assert registered_tasks(served.state_dir) == {}
    # Not even a read: the control plane logs every request, and it saw none (the key never left).
    assert not re.search(r"DeployTask|GetTaskDetails|ListTasks|ListVersions", served.log()), served.log()
    assert github_api.calls == []  # a fork's token is read-only: not even a comment is tried


# ---------------------------------------------------------------------------------------------- listening


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_the_control_plane_listens_on_loopback_unless_told_otherwise(
    start_serve: Any, tmp_path: Path
) -> None:
    loopback = "0100007F"  # 127.0.0.1, as /proc/net/tcp writes it
    served = start_serve()
    assert served.url.startswith("http://127.0.0.1:")
    assert _listening_addresses(served.port) == {loopback}

    with ControlPlaneServer.at(tmp_path / "embedded") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert _listening_addresses(server.port) == {loopback}

    everywhere = start_serve(None, "--host", "0.0.0.0")
    assert _listening_addresses(everywhere.port) == {"00000000"}
    assert "warning: 0.0.0.0 is reachable from other machines; NO authentication" in everywhere.log()

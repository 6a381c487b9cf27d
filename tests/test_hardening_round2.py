"""Hardening, round 2 (issue 15): the version always names the code that is deployed, refused deploys
change nothing, resources stay bounded, credentials never show.

Each test reproduces a finding of `shared/notes/hardening-findings.md` on the real stack (git, the
Docker engine and registry, the S3 server, our control plane) and asserts what a user sees: what was
deployed, the exit code and the one error line, the peak memory or the disk left behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.gitrepo import GitRepo, run_git
from tests.fixtures.hardening import (
    cli,
    dir_size,
    live_scratch_dir,
    one_error_line,
    registered_tasks,
    run_action,
    secret_leaks,
    statuses,
)
from tests.fixtures.pipeline import REPO_ROOT

pytestmark = pytest.mark.stack

APP = '''"""`app` depends on `base`; VALUE and the submodule's WHO say which commit this is."""
import flyte

from lib import helper

image = flyte.Image.from_base("{base}")
base = flyte.TaskEnvironment(name="base", image=image)
app = flyte.TaskEnvironment(name="app", image=image, depends_on=[base])
VALUE = {value}


@base.task
async def scale(x: int) -> int:
    return VALUE * x


@app.task
async def greet(name: str) -> str:
    return f"hello {{name}} from {{helper.WHO}}"
'''


def _git(cwd: Path, *args: str) -> str:
    # Local submodule URLs are refused by default since git 2.38.1.
    return run_git(cwd, "-c", "protocol.file.allow=always", *args)


@dataclass
class TwoCommits:
    repo: GitRepo
    first: str
    second: str
    lib_first: str
    base: str

    @property
    def svc(self) -> Path:
        return self.repo.path / "svc"

    def app(self, value: int) -> str:
        return APP.format(base=self.base, value=value)

    def checkout(self, sha: str) -> None:
        self.repo.git("checkout", "--quiet", sha)
        _git(self.repo.path, "submodule", "update", "--quiet")


@pytest.fixture
def two_commits(make_git_repo: Any, tiny_base_image: str) -> TwoCommits:
    """root_dir `svc`: `app.py` importing `lib/helper.py` from a submodule, an executable script, an
    in-project symlink, and a committed file that the `.gitignore` above root_dir leaves out of
    bundles. Commit `first`: VALUE 1, lib at "lib-1"; commit `second`: VALUE 2, lib at "lib-2"."""
    lib = make_git_repo("lib", files={"helper.py": 'WHO = "lib-1"\n'})
    lib_first = lib.head_sha
    lib.commit("lib 2", files={"helper.py": 'WHO = "lib-2"\n'})
    repo = make_git_repo("sha", files={".gitignore": ".flyte-deploy/\n*.scratch\n"})
    project = TwoCommits(repo, "", "", lib_first, tiny_base_image)
    repo.write("svc/app.py", project.app(1))
    repo.write("svc/run.sh", "#!/bin/sh\necho run\n", mode=0o755)
    repo.write("svc/notes.scratch", "left out by the .gitignore above root_dir\n")
    (project.svc / "alias.py").symlink_to("app.py")
    _git(project.svc, "submodule", "add", "--quiet", str(lib.path), "lib")
    _git(project.svc / "lib", "checkout", "--quiet", lib_first)
    repo.git("add", "--all")
    repo.git("add", "--force", "svc/notes.scratch")
    project.first = repo.commit("first")
    _git(project.svc / "lib", "checkout", "--quiet", "main")
    project.second = repo.commit("second", files={"svc/app.py": project.app(2)})
    return project


def _bundle_text(report: dict[str, Any], name: str) -> str:
    uri = report["artifacts"]["bundle"]["uri"]
    with tarfile.open(uri.removeprefix("file://")) as bundle:
        member = bundle.extractfile(name)
        assert member is not None, name
        return member.read().decode()


# ---------------------------------------------------------------------------------------------- 1. --sha


def test_deploy_sha_of_an_older_commit_deploys_that_commits_code(two_commits: TwoCommits) -> None:
    project, svc = two_commits, two_commits.svc
    # On top of `second`, uncommitted work: none of it is in `first`.
    project.repo.write("svc/app.py", project.app(3))
    project.repo.write("svc/extra.py", "EXTRA = 1\n")
    deploy = ("deploy", "app.py", "app", "--mode", "bundle", "--copy-style", "all", "--json")

    at_sha = cli(*deploy, "--sha", project.first, cwd=svc)
    assert at_sha.code == 0, at_sha.stderr
    report = at_sha.json
    assert report["plan"]["version"] == project.first
    assert report["plan"]["git"]["dirty"] is False
    assert "VALUE = 1\n" in _bundle_text(report, "app.py")
    assert _bundle_text(report, "lib/helper.py") == 'WHO = "lib-1"\n'
    files = set(report["artifacts"]["bundle"]["files"])
    assert {"app.py", "alias.py", "run.sh", "lib/helper.py"} <= files
    assert not files & {"extra.py", "notes.scratch", "lib/.git"}
    assert registered_tasks(svc / ".flyte-deploy") == {
        "app.greet": [project.first],
        "base.scale": [project.first],
    }
    assert not list(Path(tempfile.gettempdir()).glob("flyte-deploy-commit-*/sha")), "the tree is removed"

    # A checkout of `first` deploys the very same code: same bundle bytes, same specs ("unchanged").
    project.repo.git("stash", "--include-untracked", "--quiet")
    project.checkout(project.first)
    checked_out = cli(*deploy, cwd=svc)
    assert checked_out.code == 0, checked_out.stderr
    assert checked_out.json["plan"]["version"] == project.first
    assert checked_out.json["artifacts"]["bundle"]["digest"] == report["artifacts"]["bundle"]["digest"]
    assert statuses(checked_out.json) == {"base": "unchanged", "app": "unchanged"}

    # `--sha HEAD` on a clean tree is the normal deploy.
    at_head = cli(*deploy, "--sha", "HEAD", cwd=svc)
    assert at_head.code == 0, at_head.stderr
    assert at_head.json["artifacts"]["bundle"]["digest"] == report["artifacts"]["bundle"]["digest"]
    assert statuses(at_head.json) == {"base": "unchanged", "app": "unchanged"}


def test_deploy_sha_builds_the_image_of_that_commit(
    two_commits: TwoCommits, registry_url: str, unique_repo: str
) -> None:
    project, svc = two_commits, two_commits.svc
    project.repo.write("svc/app.py", project.app(3))
    deploy = (
        "deploy",
        "app.py",
        "app",
        "--mode",
        "container",
        "--json",
        "--registry",
        f"{registry_url}/{unique_repo}",
    )

    at_sha = cli(*deploy, "--sha", project.first, cwd=svc)
    assert at_sha.code == 0, at_sha.stderr
    assert at_sha.json["plan"]["version"] == project.first
    images = {(i["env_name"], i["digest"]) for i in at_sha.json["artifacts"]["images"]}

    project.repo.git("checkout", "--quiet", "--", "svc/app.py")
    project.checkout(project.first)
    checked_out = cli(*deploy, cwd=svc)
    assert checked_out.code == 0, checked_out.stderr
    assert {(i["env_name"], i["digest"]) for i in checked_out.json["artifacts"]["images"]} == images
    assert statuses(checked_out.json) == {"base": "unchanged", "app": "unchanged"}


def test_a_revision_git_cannot_resolve_is_one_error_line(tiny_repo: Any) -> None:
    repo = tiny_repo()
    for command in (("deploy", "app.py", "app", "--mode", "bundle"), ("version",)):
        failed = cli(*command, "--sha", "main@{9999}", cwd=repo.path)
        assert failed.code != 0
        assert one_error_line(failed.stderr) == f"error: --sha main@{{9999}}: no such commit in {repo.path}"
    assert registered_tasks(repo.path / ".flyte-deploy") == {}


# ---------------------------------------------------------------------------------------------- 2. submodules


def test_submodule_changes_make_the_version_dirty_and_its_git_dir_never_ships(
    two_commits: TwoCommits,
) -> None:
    project, svc = two_commits, two_commits.svc

    def version() -> str:
        done = cli("version", cwd=svc)
        assert done.code == 0, done.stderr
        return done.stdout.splitlines()[0]

    assert version() == project.second
    (svc / "lib" / "helper.py").write_text('WHO = "edited"\n')
    edited = version()
    assert edited.startswith(f"{project.second}-dirty-")
    run_git(svc / "lib", "checkout", "--quiet", "--", "helper.py")
    (svc / "lib" / "new.py").write_text("NEW = 1\n")
    untracked = version()
    assert untracked.startswith(f"{project.second}-dirty-") and untracked != edited
    (svc / "lib" / "new.py").unlink()
    run_git(svc / "lib", "checkout", "--quiet", project.lib_first)
    moved = version()
    assert moved.startswith(f"{project.second}-dirty-") and moved not in (edited, untracked)
    run_git(svc / "lib", "checkout", "--quiet", "main")
    assert version() == project.second

    planned = cli("plan", "app.py", "app", "--mode", "bundle", "--copy-style", "all", "--json", cwd=svc)
    assert planned.code == 0, planned.stderr
    files = planned.json["bundle"]["files"]
    assert "lib/helper.py" in files and "lib/.git" not in files


# ---------------------------------------------------------------------------------------------- 4. reuse


def test_a_corrupt_stored_bundle_is_never_reused(
    tiny_repo: Any, stack_env: dict[str, str], s3_client: Any, s3_bucket: str, unique_repo: str
) -> None:
    repo = tiny_repo()
    prefix = f"hardening/{unique_repo}"
    env = {"FLYTE_DEPLOY_S3_ENDPOINT_URL": stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"]}
    deploy = (
        "deploy",
        "app.py",
        "app",
        "--mode",
        "bundle",
        "--storage",
        f"s3://{s3_bucket}/{prefix}",
        "--json",
    )

    first = cli(*deploy, "--domain", "development", cwd=repo.path, env=env)
    assert first.code == 0, first.stderr
    bundle = first.json["artifacts"]["bundle"]
    key = bundle["uri"].removeprefix(f"s3://{s3_bucket}/")
    good = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    corrupt = bytes(b ^ 0xFF for b in good)
    assert len(corrupt) == bundle["size"]

    # Other bytes under the bundle's name: stored without a checksum, and with one of their own.
    for domain, extra in (
        ("staging", {}),
        ("production", {"ChecksumSHA256": base64.b64encode(hashlib.sha256(corrupt).digest()).decode()}),
    ):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=corrupt, **extra)
        again = cli(*deploy, "--domain", domain, cwd=repo.path, env=env)
        assert again.code == 0, again.stderr
        assert again.json["artifacts"]["bundle"]["reused"] is False
        stored = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == bundle["digest"]
        assert statuses(again.json) == {"base": "registered", "app": "registered"}

    intact = cli(*deploy, "--domain", "qa", cwd=repo.path, env=env)
    assert intact.code == 0, intact.stderr
    assert intact.json["artifacts"]["bundle"]["reused"] is True


# ---------------------------------------------------------------------------------------------- 6, 7. inputs


def test_a_module_imported_through_a_symlink_leading_outside_is_refused(tiny_repo: Any) -> None:
    repo = tiny_repo()
    outside = repo.path.parent / "outside.py"
    outside.write_text("HELPER = 1\n")
    (repo.path / "helper.py").symlink_to(outside)
    repo.write("app.py", "import helper\n" + repo.read("app.py"))
    for mode in ("bundle", "container"):
        failed = cli(
            "deploy", "app.py", "app", "--mode", mode, "--registry", "127.0.0.1:5000/x", cwd=repo.path
        )
        assert failed.code != 0
        error = one_error_line(failed.stderr)
        assert error == f"error: symlink helper.py points outside root_dir {repo.path} (to {outside})"
    assert registered_tasks(repo.path / ".flyte-deploy") == {}


def test_a_file_name_that_is_not_utf8_is_refused_before_anything_is_registered(tiny_repo: Any) -> None:
    repo = tiny_repo()
    (repo.path / os.fsdecode(b"bad\xffbyte.txt")).write_text("data\n")
    deploy = ("deploy", "app.py", "app", "--mode", "bundle", "--copy-style", "all", "--json")
    failed = cli(*deploy, cwd=repo.path)
    assert failed.code != 0
    assert one_error_line(failed.stderr) == (
        r"error: bad\xffbyte.txt: the file name is not valid UTF-8; "
        "rename it or leave it out with .flyteignore"
    )
    assert registered_tasks(repo.path / ".flyte-deploy") == {}
    assert not (repo.path / ".flyte-deploy" / "bundles").exists()

    # Left out by `.flyteignore` (whose pattern matches the undecodable name), the deploy goes through.
    (repo.path / ".flyteignore").write_text("bad*\n")
    done = cli(*deploy, cwd=repo.path)
    assert done.code == 0, done.stderr
    assert statuses(done.json) == {"base": "registered", "app": "registered"}
    assert done.json["artifacts"]["bundle"]["files"] == [".flyteignore", ".gitignore", "app.py"]


# ----------------------------------------------------------------------------------- 8, 10, 11, 12. resources


def test_the_version_of_a_dirty_tree_streams_large_files(tiny_repo: Any, peak_rss: Any) -> None:
    repo = tiny_repo()
    size = 1 << 30
    with open(repo.path / "big.bin", "wb") as big:  # sparse: 1 GiB read, nothing on disk
        big.truncate(size)
    done = cli("version", cwd=repo.path, prefix=peak_rss.prefix)
    assert done.code == 0, done.stderr
    assert done.stdout.startswith(f"{repo.head_sha}-dirty-")
    print(f"peak RSS of `version` over a {size >> 20} MiB untracked file: {peak_rss.bytes >> 20} MiB")
    assert peak_rss.bytes < 200 << 20


def test_a_pathological_ignore_pattern_is_matched_in_linear_time(tiny_repo: Any) -> None:
    # Python's backtracking `re` needs ~17 s for 12 `*a` against 34 `a`, ×1.6 per `*a` more: here, hours.
    pattern = "*a" * 24 + "*b"
    repo = tiny_repo(**{".flyteignore": f"{pattern}\n!keep*\n"})
    (repo.path / ("a" * 40)).write_text("kept: no b\n")
    (repo.path / ("a" * 40 + "b")).write_text("ignored\n")
    (repo.path / "keep-aaaaaaaaaaaaaaaaaaaaaaaaab").write_text("re-included by the negation\n")
    planned = cli(
        "plan",
        "app.py",
        "app",
        "--mode",
        "bundle",
        "--copy-style",
        "all",
        "--json",
        cwd=repo.path,
        timeout=120,
    )
    assert planned.code == 0, planned.stderr
    assert planned.json["bundle"]["files"] == [
        ".flyteignore",
        ".gitignore",
        "a" * 40,
        "app.py",
        "keep-aaaaaaaaaaaaaaaaaaaaaaaaab",
    ]


def test_a_full_disk_while_writing_the_bundle_is_one_error_line(tiny_repo: Any, tiny_tmpfs: Path) -> None:
    repo = tiny_repo()
    (repo.path / "blob.bin").write_bytes(os.urandom(3 << 20))  # incompressible: a 3 MiB bundle
    failed = cli(
        "deploy", "app.py", "app", "--mode", "bundle", "--copy-style", "all", "--state-dir", str(tiny_tmpfs),
        cwd=repo.path,
    )  # fmt: skip
    assert failed.code != 0
    error = one_error_line(failed.stderr)
    assert error.startswith(f"error: cannot write the bundle to {tiny_tmpfs}/bundle-")
    assert error.endswith(": No space left on device")
    assert registered_tasks(tiny_tmpfs) == {}
    assert dir_size(tiny_tmpfs) < 256 << 10, "the partial bundle is removed"


def test_a_killed_deploy_leaves_nothing_the_next_run_does_not_clean(
    tiny_repo: Any,
    fault_proxy: Any,
    stack_env: dict[str, str],
    s3_client: Any,
    s3_bucket: str,
    unique_repo: str,
) -> None:
    repo = tiny_repo()
    # Incompressible, above the 64 MiB multipart threshold: the upload goes in parts.
    (repo.path / "data.bin").write_bytes(os.urandom(70 << 20))
    proxy = fault_proxy(stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])
    prefix = f"hardening/{unique_repo}"
    state = repo.path / ".flyte-deploy"
    deploy = [
        "deploy",
        "app.py",
        "app",
        "--mode",
        "bundle",
        "--copy-style",
        "all",
        "--storage",
        f"s3://{s3_bucket}/{prefix}",
    ]
    env = {**os.environ, "FLYTE_DEPLOY_S3_ENDPOINT_URL": proxy.url, "PYTHONPATH": str(REPO_ROOT)}

    # Killed twice while its first part is on the wire: a bundle copy and an open upload each time.
    for _ in range(2):
        arrived = proxy.hold_at("PUT", r"partNumber=")
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer", *deploy], cwd=repo.path, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert arrived.wait(timeout=300), "the deploy never started its multipart upload"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
    # (The second run already removes what the first one left.)
    assert [p for p in state.glob("bundle-*") if p.is_dir()], "the killed run's bundle copy is there"
    assert dir_size(state) > 70 << 20
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket, Prefix=prefix).get("Uploads"), "an open upload"
    proxy.release()

    # A concurrent deploy is still running: its scratch directory must survive the cleanup.
    with live_scratch_dir(state, "bundle-") as live:
        rerun = cli(*deploy, "--json", cwd=repo.path, env={"FLYTE_DEPLOY_S3_ENDPOINT_URL": proxy.url})
        assert rerun.code == 0, rerun.stderr
        assert statuses(rerun.json) == {"base": "registered", "app": "registered"}
        assert [p for p in state.glob("bundle-*") if p.is_dir()] == [live]
        assert (live / "work").read_bytes() == b"in progress"
    assert not list(state.glob("bundle-*")) and not list(state.glob("s3-upload-*"))
    assert dir_size(state) < 1 << 20, "only the control plane's database is left"
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket, Prefix=prefix).get("Uploads", []) == []


# ------------------------------------------------------------------------------------------- 13. credentials


def test_credentials_in_the_endpoint_never_show(tiny_repo: Any, start_serve: Any, tmp_path: Path) -> None:
    repo = tiny_repo()
    served = start_serve()
    password = "endpoint-pw-4c2d9e"
    endpoint = served.url.replace("http://", f"http://admin:{password}@")
    shown = served.url.replace("http://", "http://***@")

    done = cli("deploy", "app.py", "app", "--mode", "bundle", "--endpoint", endpoint, cwd=repo.path)
    assert done.code == 0, done.stderr
    assert f"flytesnacks/development · {shown}" in done.stdout
    as_json = cli(
        "deploy", "app.py", "app", "--mode", "bundle", "--endpoint", endpoint, "--json", cwd=repo.path
    )
    assert as_json.code == 0 and as_json.json["deployment"]["endpoint"] == shown
    down = endpoint.rsplit(":", 1)[0] + ":1"
    failed = cli(
        "deploy", "app.py", "app", "--mode", "bundle", "--endpoint", down, "--insecure", cwd=repo.path
    )
    assert failed.code != 0
    assert one_error_line(failed.stderr).startswith(
        "error: control plane http://***@127.0.0.1:1 is unreachable"
    )

    inputs = {"path": "app.py", "all": "true", "mode": "bundle", "endpoint": endpoint}
    github = {"GITHUB_REF": "refs/heads/main", "GITHUB_SHA": repo.head_sha, "GITHUB_REPOSITORY": "acme/app"}
    action = run_action(repo.path, "push", {}, runner_dir=tmp_path / "runner", inputs=inputs, env=github)
    assert action.code == 0, action.log
    lines = action.log.splitlines()
    first_output = next(i for i, line in enumerate(lines) if not line.startswith("::add-mask::"))
    assert f"::add-mask::{password}" in lines[:first_output], "masked before anything is printed"
    refused = run_action(
        repo.path,
        "push",
        {},
        runner_dir=tmp_path / "refused",
        inputs=inputs | {"endpoint": down, "insecure": "true"},
        env=github,
    )
    assert refused.code != 0 and "::error" in refused.log
    texts = {
        "CLI": done.stdout + done.stderr + as_json.stdout + failed.stdout + failed.stderr,
        "action log": _without_masks(action.log),
        "failed action log": _without_masks(refused.log),
        "step summary": action.summary + refused.summary,
        "outputs": json.dumps(action.outputs) + json.dumps(refused.outputs),
    }
    assert "`flytesnacks/staging` on http://***" in action.summary
    assert secret_leaks({"endpoint password": password}, texts) == []


def _without_masks(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if not line.startswith("::add-mask::"))

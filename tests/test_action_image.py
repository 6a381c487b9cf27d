"""The action image is reproducible (base pinned by digest, dependencies from a hash lock that
matches pyproject.toml), and a release turns action.yml into a pull of the published image."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.gitrepo import GitRepo

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements.lock"
RELEASE_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "action-image.yml"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")
DIGEST = "sha256:" + "ab" * 32


def locked() -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) for every entry of requirements.lock."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
            entries[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


def test_the_lock_pins_every_dependency_within_pyprojects_ranges_with_hashes() -> None:
    """Fails when pyproject.toml changes and requirements.lock was not regenerated (scripts/lock)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    entries = locked()
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in requirements.lock: run scripts/lock"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: run scripts/lock"
        )
    assert all(hashes >= 1 for _, hashes in entries.values()), "every lock entry needs its hashes"


def test_the_dockerfile_pins_its_base_and_installs_only_from_the_lock() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    [base] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, flags=re.M)
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs == [
        "RUN python -m pip install --no-deps --require-hashes -r /src/requirements.lock \\",
        "RUN python -m pip install --no-deps --no-build-isolation /src \\",
    ]
    assert "!requirements.lock" in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8")


def test_action_yml_on_main_builds_the_dockerfile() -> None:
    """The release commit rewrites exactly this line; on main, `uses: ./` builds the checkout."""
    action = (REPO_ROOT / "action.yml").read_text(encoding="utf-8")
    assert [line for line in action.splitlines() if line.startswith("  image:")] == ["  image: Dockerfile"]
    assert yaml.safe_load(action)["runs"] == {"using": "docker", "image": "Dockerfile"}


# ---------------------------------------------------------------------------------------------- the release


def release_step(step_id: str) -> dict[str, Any]:
    workflow = yaml.safe_load(RELEASE_WORKFLOW.read_text(encoding="utf-8"))
    [step] = [s for s in workflow["jobs"]["publish"]["steps"] if s.get("id") == step_id]
    return step


def run_step(step_id: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """Run the step's `run:` script with bash, as the runner does; return what it wrote to
    GITHUB_OUTPUT."""
    output = cwd.parent / f"{step_id}-output"
    output.write_text("")
    done = subprocess.run(
        ["bash", "-e", "-c", release_step(step_id)["run"]],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd.parent), "GITHUB_OUTPUT": str(output)} | env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)


def test_a_release_points_its_tags_at_a_commit_that_pulls_the_published_image(
    make_git_repo: Any, tmp_path: Path
) -> None:
    source: GitRepo = make_git_repo(
        "flyte-deploy", files={"action.yml": (REPO_ROOT / "action.yml").read_text(), "Dockerfile": "FROM x\n"}
    )
    tagged = source.tag("v1.4.0", message="v1.4.0")
    remote = source.clone(tmp_path / "remote.git", bare=True)
    checkout = source.clone(tmp_path / "checkout")
    checkout.checkout("v1.4.0", detach=True)

    names = run_step("names", checkout.path, {"OWNER": "Acme", "TAG": "v1.4.0"})
    image = "ghcr.io/acme/flyte-deploy-action"
    assert names == {
        "publish": "true",
        "image": image,
        "major": "v1",
        "tags": f"{image}:v1.4.0,{image}:v1",
    }
    env = {
        "IMAGE": image,
        "DIGEST": DIGEST,
        "MAJOR": "v1",
        "TAG": "v1.4.0",
        "TOKEN": "t",
        "REMOTE": str(remote.path),
    }
    run_step("release-commit", checkout.path, env)

    release = remote.rev_parse("v1.4.0^{commit}")
    assert remote.rev_parse("v1^{commit}") == release
    assert remote.git("rev-parse", f"{release}^") == tagged
    assert remote.git("diff", "--name-only", tagged, release) == "action.yml"
    action = yaml.safe_load(remote.git("show", f"{release}:action.yml"))
    assert action["runs"] == {"using": "docker", "image": f"docker://{image}@{DIGEST}"}
    # A release commit is never published again.
    checkout.checkout(release, detach=True)
    assert run_step("names", checkout.path, {"OWNER": "acme", "TAG": "v1.4.0"}) == {"publish": "false"}


def test_a_pre_release_moves_no_major_tag(make_git_repo: Any) -> None:
    repo: GitRepo = make_git_repo(
        "flyte-deploy", files={"action.yml": (REPO_ROOT / "action.yml").read_text()}
    )
    names = run_step("names", repo.path, {"OWNER": "acme", "TAG": "v2.0.0-rc.1"})
    assert (names["major"], names["tags"]) == ("", "ghcr.io/acme/flyte-deploy-action:v2.0.0-rc.1")

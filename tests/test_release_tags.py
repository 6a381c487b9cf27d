"""The tags a release or a branch reads (`X.Y.Z`, `X.Y`, `X`, `latest`) move only when the control plane
took the deploy, and `latest` never moves back to an older release (issue 15 item 3, issue 14 item 6)."""

from __future__ import annotations

from typing import Any

from tests.fixtures.hardening import cli, one_error_line
from tests.fixtures.stack import registry_manifest_digest


def container_deploy(repo: Any, registry: str, *extra: str) -> Any:
    args = ("deploy", "app.py", "app", "--mode", "container", "--registry", registry, *extra)
    return cli(*args, "--json", cwd=repo.path, env={"GITHUB_EVENT_NAME": "", "GITHUB_REF": ""})


def digest_of(registry_url: str, repository: str, tag: str) -> str | None:
    return registry_manifest_digest(registry_url, repository.removeprefix(f"{registry_url}/"), tag)


def test_a_refused_release_moves_no_tag(tiny_repo: Any, registry_url: str, unique_repo: str) -> None:
    repo = tiny_repo()
    registry = f"{registry_url}/{unique_repo}"
    repo.tag("v2.0.0")
    first = container_deploy(repo, registry)
    assert first.code == 0, first.stderr
    repository = first.json["artifacts"]["images"][0]["repository"]
    released = digest_of(registry_url, repository, "2.0.0")
    assert released is not None and digest_of(registry_url, repository, "latest") == released

    # The tag is moved to new code: the control plane refuses version v2.0.0 with another spec.
    repo.commit("change", files={"app.py": (repo.path / "app.py").read_text() + "\nVALUE = 2\n"})
    repo.git("tag", "-f", "v2.0.0")
    refused = container_deploy(repo, registry)
    assert refused.code == 1
    assert "already exists" in one_error_line(refused.stderr)
    for tag in ("2.0.0", "2.0", "2", "latest"):
        assert digest_of(registry_url, repository, tag) == released, tag
    # The new build itself is pushed under the tags that name it, and nothing else.
    assert digest_of(registry_url, repository, f"sha-{repo.head_sha[:7]}") not in (None, released)


def test_an_older_release_never_moves_latest(tiny_repo: Any, registry_url: str, unique_repo: str) -> None:
    repo = tiny_repo()
    registry = f"{registry_url}/{unique_repo}"
    repo.tag("v3.1.0")
    newer = container_deploy(repo, registry)
    assert newer.code == 0, newer.stderr
    repository = newer.json["artifacts"]["images"][0]["repository"]
    newest = digest_of(registry_url, repository, "3.1.0")

    repo.commit("hotfix of 3.0", files={"app.py": (repo.path / "app.py").read_text() + "\nHOTFIX = 1\n"})
    repo.tag("v3.0.1")
    older = container_deploy(repo, registry)
    assert older.code == 0, older.stderr
    hotfix = digest_of(registry_url, repository, "3.0.1")
    assert hotfix not in (None, newest)
    assert digest_of(registry_url, repository, "3.0") == hotfix
    assert digest_of(registry_url, repository, "3") == newest
    assert digest_of(registry_url, repository, "latest") == newest
    assert "stays at v3.1.0, newer than v3.0.1" in older.stderr

"""`flyte-deploy plan`: the plan of a deploy on real repositories, computed without side effects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flyte
import pytest

from deployer.errors import PlanError, UsageError
from deployer.images.spec import image_spec, parse_image_map
from deployer.models import CopyStyle, Mode, Plan
from deployer.plan import PlanResult, docker_answers, plan_request
from deployer.request import DeployRequest
from tests.fixtures.gitrepo import GitRepo, MakeGitRepo
from tests.projects import copy_project

FLYTE_BASE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
DEAD_DOCKER = "unix:///nonexistent/flyte-deploy-test/docker.sock"


@pytest.fixture(autouse=True)
def no_github_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GITHUB_"):
            monkeypatch.delenv(key)


@pytest.fixture
def make_project(make_git_repo: MakeGitRepo) -> Any:
    """A git repository holding one sample project, committed."""

    def make(name: str) -> GitRepo:
        repo = make_git_repo(name)
        copy_project(name, repo.path)
        (repo.path / ".gitignore").write_text("__pycache__/\n")
        repo.commit(f"add {name}", date="2024-03-04T05:06:07+00:00")
        return repo

    return make


def plan_of(root: Path, path: str, var: str | None = None, **flags: Any) -> PlanResult:
    flags.setdefault("mode", Mode.bundle)
    return plan_request(DeployRequest.of(root / path, var, root_dir=root, **flags))


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def test_plan_json_has_what_the_issue_lists(make_project: Any) -> None:
    repo = make_project("chain")
    result = cli("plan", "pipeline/viz.py", "viz", "--mode", "bundle", "--json", cwd=repo.path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == repo.head_sha
    assert data["git"] == {"sha": repo.head_sha, "ref": "refs/heads/main", "pr": None, "dirty": False}
    assert data["image_tags"] == [f"sha-{repo.head_sha[:7]}"]
    assert [e["name"] for e in data["environments"]] == ["prep", "ml", "viz"]
    viz = data["environments"][2]
    assert viz["depends_on"] == ["ml"]
    assert viz["tasks"] == ["viz.chart"]
    assert viz["image"]["uri"] == FLYTE_BASE and viz["image"]["ref_name"] is None
    assert len(viz["image"]["spec_id"]) == 32
    assert viz["mode"] == "bundle" and viz["mode_reason"]
    assert viz["source_file"] == "pipeline/viz.py"
    assert data["bundle"]["copy_style"] == "loaded_modules"
    assert data["bundle"]["files"] == [
        "pipeline/__init__.py",
        "pipeline/ml.py",
        "pipeline/prep.py",
        "pipeline/viz.py",
    ]
    assert len(data["bundle"]["digest"]) == 64
    assert data["image_args"] == []
    assert data["root_dir"] == "."
    # A versioned envelope around the plan itself.
    assert (data.pop("schema_version"), data.pop("kind")) == (1, "plan")
    Plan.model_validate(data)


@pytest.mark.parametrize(
    ("project", "args"),
    [
        ("flat", ("workflows.py", "env", "--mode", "bundle")),
        ("hybrid", ("--all", "workflows.py", "--mode", "container", "--copy-style", "all")),
    ],
)
def test_same_commit_on_two_clones_plans_identically(
    make_project: Any, project: str, args: tuple[str, ...]
) -> None:
    repo = make_project(project)
    outputs = []
    for clone in (repo.clone(), repo.clone()):
        result = cli("plan", *args, "--json", cwd=clone.path)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["version"] == repo.head_sha


def test_flat_layout_bundles_loaded_modules_but_not_the_lazy_one(make_project: Any) -> None:
    repo = make_project("flat")
    plan = plan_of(repo.path, "workflows.py", "env").plan
    assert plan.bundle is not None
    assert plan.bundle.files == (
        "tasks/__init__.py",
        "tasks/stats.py",
        "utils/__init__.py",
        "utils/text.py",
        "workflows.py",
    )
    everything = plan_of(repo.path, "workflows.py", "env", copy_style=CopyStyle.all).plan
    assert everything.bundle is not None
    assert "utils/lazy_report.py" in everything.bundle.files
    assert "data/config.csv" in everything.bundle.files
    assert everything.bundle.digest != plan.bundle.digest


def test_auto_copy_style_is_loaded_modules(make_project: Any) -> None:
    repo = make_project("flat")
    auto = plan_of(repo.path, "workflows.py", "env", copy_style=CopyStyle.auto).plan
    loaded = plan_of(repo.path, "workflows.py", "env").plan
    assert auto == loaded
    assert auto.copy_style is CopyStyle.loaded_modules


def test_copy_style_none_has_no_bundle(make_project: Any) -> None:
    repo = make_project("hybrid")
    plan = plan_of(
        repo.path, "workflows.py", all_envs=True, copy_style=CopyStyle.none, mode=Mode.container
    ).plan
    assert plan.bundle is None
    assert plan.version == repo.head_sha
    assert {e.name: e.mode for e in plan.environments} == {"dev": "container", "prod": "container"}


def test_bundle_mode_cannot_have_copy_style_none(make_project: Any) -> None:
    repo = make_project("hybrid")
    with pytest.raises(PlanError, match="--mode bundle needs a code bundle, but --copy-style is none"):
        plan_of(repo.path, "workflows.py", all_envs=True, copy_style=CopyStyle.none, mode=Mode.bundle)


def test_src_layout_with_root_dir(make_project: Any) -> None:
    repo = make_project("src_layout")
    result = cli(
        "plan",
        "src/weather/workflows.py",
        "env",
        "--root-dir",
        "src",
        "--mode",
        "bundle",
        "--json",
        cwd=repo.path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["root_dir"] == "src"
    assert data["bundle"]["files"] == ["weather/__init__.py", "weather/convert.py", "weather/workflows.py"]
    assert data["environments"][0]["source_file"] == "weather/workflows.py"


def test_monorepo_bundles_the_library_not_other_services(make_project: Any) -> None:
    repo = make_project("monorepo")
    plan = plan_of(repo.path, "services/ml_service/workflows.py", "env").plan
    assert plan.bundle is not None
    assert plan.bundle.files == (
        "libs/__init__.py",
        "libs/common/__init__.py",
        "libs/common/features.py",
        "services/ml_service/workflows.py",
    )


def test_environment_chosen_by_domain(make_project: Any) -> None:
    repo = make_project("by_domain")
    prod = plan_of(repo.path, "workflows.py", "env", domain="production").plan
    dev = plan_of(repo.path, "workflows.py", "env", domain="development").plan
    assert [e.name for e in prod.environments] == ["etl-prod"]
    assert [e.name for e in dev.environments] == ["etl-dev"]
    assert (prod.domain, dev.domain) == ("production", "development")


def test_hybrid_file_bundled_dev_and_container_prod(make_project: Any) -> None:
    repo = make_project("hybrid")
    plan = plan_of(repo.path, "workflows.py", all_envs=True, mode=Mode.container).plan
    dev, prod = plan.environments
    assert (dev.name, dev.mode) == ("dev", "bundle")
    assert dev.mode_reason == f"{FLYTE_BASE} is deployed as-is: the code ships in the bundle"
    assert dev.image.uri == FLYTE_BASE and not dev.image.needs_build and dev.image.external
    assert (prod.name, prod.mode, prod.mode_reason) == ("prod", "container", "--mode container")
    assert prod.image.needs_build and prod.image.uri is None
    assert prod.image.base == FLYTE_BASE


def test_auto_mode_without_a_docker_engine_bundles(
    make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_project("hybrid")
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)
    assert not docker_answers()
    plan = plan_of(repo.path, "workflows.py", all_envs=True, mode=Mode.auto).plan
    prod = plan.environments[1]
    assert (prod.mode, prod.mode_reason) == (
        "bundle",
        "no Docker engine answered: the code ships in the bundle",
    )
    assert prod.image.needs_build


@pytest.mark.stack
def test_auto_mode_with_a_docker_engine_builds_containers(
    make_project: Any, docker_client: Any, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_project("hybrid")
    monkeypatch.setenv("DOCKER_HOST", stack_env["DOCKER_HOST"])
    plan = plan_of(repo.path, "workflows.py", all_envs=True, mode=Mode.auto).plan
    dev, prod = plan.environments
    assert (prod.mode, prod.mode_reason) == (
        "container",
        "a Docker engine answered: the code is built into the image",
    )
    assert prod.image.needs_build and prod.image.uri is None
    # An image deployed as-is stays in bundle mode even when it could be built.
    assert dev.mode == "bundle"


def test_ref_image_filled_by_image_flag(make_project: Any) -> None:
    repo = make_project("ref_image")
    uri = "127.0.0.1:5000/acme/trainer:2024.1"
    plan = plan_of(repo.path, "workflows.py", "env", images=[f"trainer={uri}"], mode=Mode.container).plan
    (env,) = plan.environments
    assert env.image.ref_name == "trainer"
    assert env.image.uri == uri and not env.image.needs_build
    assert env.mode == "bundle"
    assert plan.image_args == ("--image", f"trainer={uri}")


def test_unmapped_ref_image_lists_known_names(make_project: Any) -> None:
    repo = make_project("ref_image")
    with pytest.raises(PlanError) as caught:
        plan_of(repo.path, "workflows.py", "env", images=["gpu=ghcr.io/acme/gpu:1"])
    assert str(caught.value) == (
        "environment 'trainer' uses Image.from_ref_name('trainer') but no --image trainer=URI was given "
        "(mapped names: gpu)"
    )


def test_bare_image_is_the_default_for_auto(make_git_repo: MakeGitRepo) -> None:
    repo = make_git_repo(
        files={
            "wf.py": "import flyte\nenv = flyte.TaskEnvironment(name='plain')\n",
            ".gitignore": "__pycache__/\n",
        }
    )
    default = "127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1"
    plan = plan_of(repo.path, "wf.py", "env", images=[default]).plan
    assert plan.environments[0].image.uri == default
    assert plan.image_args == ("--image", default)
    flyte_default = plan_of(repo.path, "wf.py", "env").plan.environments[0].image
    assert flyte_default.uri == FLYTE_BASE and not flyte_default.external


def test_base_image_mirror_rewrites_images_used_as_is(make_project: Any) -> None:
    repo = make_project("chain")
    mirror = "ghcr.io/flyteorg=127.0.0.1:5000/flyteorg"
    plan = plan_of(repo.path, "pipeline/prep.py", "prep", base_image_mirrors=[mirror]).plan
    assert plan.environments[0].image.uri == "127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("trainer=", "--image 'trainer=': expected NAME=URI"),
        ("=127.0.0.1:5000/x:1", "expected NAME=URI"),
        ("trainer=Registry/UPPER:1", "repository names must be lower case"),
        ("trainer=has space:1", "not an image reference"),
    ],
)
def test_malformed_image_flag(make_project: Any, value: str, message: str) -> None:
    repo = make_project("ref_image")
    with pytest.raises(UsageError, match=message):
        plan_of(repo.path, "workflows.py", "env", images=[value])


def test_version_override_and_release_tag(make_project: Any) -> None:
    repo = make_project("chain")
    repo.tag("v1.4.0")
    plan = plan_of(repo.path, "pipeline/viz.py", "viz").plan
    assert plan.version == "v1.4.0" and plan.release
    assert plan.image_tags == ("1.4.0", "1.4", "1", "latest", f"sha-{repo.head_sha[:7]}")
    assert plan_of(repo.path, "pipeline/viz.py", "viz", version="pinned-7").plan.version == "pinned-7"


def test_pull_request_plan(make_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_project("chain")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 8, "head": {"sha": repo.head_sha}}}))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "pull_request")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_REF", "refs/pull/8/merge")
    plan = plan_of(repo.path, "pipeline/viz.py", "viz").plan
    assert plan.git.pr == 8 and plan.git.ref == "refs/pull/8/merge"
    assert "pr-8" in plan.image_tags


def test_dirty_tree_plan(make_project: Any) -> None:
    repo = make_project("chain")
    clean = plan_of(repo.path, "pipeline/viz.py", "viz").plan
    repo.write("pipeline/viz.py", repo.read("pipeline/viz.py") + "\n# edited\n")
    dirty = plan_of(repo.path, "pipeline/viz.py", "viz").plan
    assert dirty.git.dirty and dirty.version != clean.version
    assert dirty.bundle is not None and clean.bundle is not None
    assert dirty.bundle.digest != clean.bundle.digest
    assert plan_of(repo.path, "pipeline/viz.py", "viz").plan == dirty


def test_directory_outside_git(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "plain")
    plan = plan_of(root, "pipeline/viz.py", "viz").plan
    assert plan.git.sha is None
    assert plan.version.startswith("local-")
    assert plan.root_dir == Path(".")


def test_human_table(make_project: Any) -> None:
    repo = make_project("chain")
    result = cli("plan", "pipeline/viz.py", "viz", "--mode", "bundle", cwd=repo.path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"version {repo.head_sha}" in lines[0]
    rows = [line for line in lines if line.startswith("│") and line[2].isdigit()]
    assert [row.split("│")[2].strip() for row in rows] == ["prep", "ml", "viz"]
    assert any(line.startswith("bundle: loaded_modules, 4 files, sha256 ") for line in lines)


def test_cli_bad_image_is_one_line(make_project: Any) -> None:
    repo = make_project("ref_image")
    result = cli("plan", "workflows.py", "env", "--image", "trainer=", cwd=repo.path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --image 'trainer=': expected NAME=URI (both non-empty) or a bare URI"
    ]


def spec_of(image: Any, *mapping: str) -> Any:
    env = flyte.TaskEnvironment(name="spec-probe", image=image)
    return image_spec(env, parse_image_map(mapping))


def test_spec_id_depends_on_content_not_location(tmp_path: Path) -> None:
    for clone in ("clone-a", "clone-b"):
        (tmp_path / clone / "app").mkdir(parents=True)
        (tmp_path / clone / "app" / "main.py").write_text("print('same')\n")
    base = flyte.Image.from_debian_base(python_version=(3, 11))
    a = spec_of(base.with_source_folder(tmp_path / "clone-a" / "app", copy_contents_only=True))
    b = spec_of(base.with_source_folder(tmp_path / "clone-b" / "app", copy_contents_only=True))
    assert a.needs_build and a.uri is None
    assert a.spec_id == b.spec_id
    # Bytecode from importing the code is not content.
    (tmp_path / "clone-b" / "app" / "__pycache__").mkdir()
    (tmp_path / "clone-b" / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    assert (
        spec_of(base.with_source_folder(tmp_path / "clone-b" / "app", copy_contents_only=True)).spec_id
        == a.spec_id
    )
    (tmp_path / "clone-b" / "app" / "main.py").write_text("print('changed')\n")
    changed = spec_of(base.with_source_folder(tmp_path / "clone-b" / "app", copy_contents_only=True))
    assert changed.spec_id != a.spec_id


def test_spec_id_ignores_registry_and_name_but_not_layers_or_python() -> None:
    base = flyte.Image.from_debian_base(python_version=(3, 11)).with_pip_packages("requests==2.32.3")
    moved = base.clone(registry="ghcr.io/acme", name="other")
    assert spec_of(base).spec_id == spec_of(moved).spec_id
    assert spec_of(base).spec_id != spec_of(base.with_pip_packages("rich")).spec_id
    py312 = flyte.Image.from_debian_base(python_version=(3, 12)).with_pip_packages("requests==2.32.3")
    assert spec_of(py312).spec_id != spec_of(base).spec_id


def test_ref_image_with_layers_builds_on_the_mapped_uri() -> None:
    layered = flyte.Image.from_ref_name("trainer").clone(extendable=True).with_env_vars({"A": "1"})
    spec = spec_of(layered, "trainer=127.0.0.1:5000/acme/trainer:1")
    assert spec.needs_build and spec.uri is None and not spec.external
    assert spec.base == "127.0.0.1:5000/acme/trainer:1" and spec.ref_name == "trainer"
    other = spec_of(layered, "trainer=127.0.0.1:5000/acme/trainer:2")
    assert other.spec_id != spec.spec_id


def test_string_image_must_be_a_reference() -> None:
    with pytest.raises(
        PlanError, match=r"environment 'spec-probe': image 'Not A Ref': not an image reference"
    ):
        spec_of("Not A Ref")


@pytest.mark.parametrize(
    "reference",
    [
        "python:3.11",
        "127.0.0.1:5000/library/python:3.11-bookworm",
        "ghcr.io/flyteorg/flyte:py3.11-v2.12.1",
        "localhost/a/b__c/d-e:tag_1",
        "registry.example:8443/x@sha256:" + "a" * 64,
        "[::1]:5000/img:1",
    ],
)
def test_valid_references(reference: str) -> None:
    assert parse_image_map([f"n={reference}"]).named == {"n": reference}


def test_image_map_default_and_conflicts() -> None:
    parsed = parse_image_map(["b=x/b:1", "python:3.11", "a=x/a:1", "default=python:3.11"])
    assert parsed.named == {"a": "x/a:1", "b": "x/b:1"}
    assert parsed.default == "python:3.11"
    with pytest.raises(UsageError, match="image 'a' is already mapped to 'x/a:1'"):
        parse_image_map(["a=x/a:1", "a=x/a:2"])
    with pytest.raises(UsageError, match="the default image is already mapped"):
        parse_image_map(["python:3.11", "python:3.12"])


def test_cli_missing_root_dir_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for command in (
        ["plan", "--recursive", ".", "--root-dir", str(missing)],
        ["version", "--root-dir", str(missing)],
    ):
        result = cli(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"error: --root-dir {missing}: not a directory"]

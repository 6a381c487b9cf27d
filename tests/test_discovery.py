"""Discovery imports real user code with the real flyte SDK: `FILE VAR`, `--all`, `--recursive`, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flyte
import pytest
from flyte._environment import list_loaded_environments

from deployer.discovery import FlyteScope, discover
from deployer.errors import DiscoveryError, UsageError
from deployer.models import Discovery
from deployer.request import DeployRequest
from tests.projects import copy_project

IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"


def run(root: Path, path: Path | str, var: str | None = None, **flags: object) -> Discovery:
    target = Path(path) if Path(path).is_absolute() else root / path
    request = DeployRequest.of(target, var, root_dir=root, **flags)
    return discover(request.selection, request.settings.root, FlyteScope(**_scope(request)))


def _scope(request: DeployRequest) -> dict[str, str]:
    settings = request.settings
    return {"project": settings.project, "domain": settings.domain, "org": settings.org}


def rel(files: tuple[Path, ...], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_file_var_selects_one_environment(tmp_path: Path) -> None:
    root = copy_project("flat", tmp_path / "flat")
    found = run(root, "workflows.py", "env")
    assert [e.name for e in found.environments] == ["flat"]
    env = found.environments[0]
    assert env.var == "env"
    assert env.file == root / "workflows.py"
    assert isinstance(env.env, flyte.TaskEnvironment)
    assert sorted(env.env.tasks) == ["flat.average", "flat.clean", "flat.report"]
    assert found.root_dir == root


def test_lazily_imported_module_is_not_loaded(tmp_path: Path) -> None:
    root = copy_project("flat", tmp_path / "flat")
    found = run(root, "workflows.py", "env")
    assert rel(found.loaded_files, root) == [
        "tasks/__init__.py",
        "tasks/stats.py",
        "utils/__init__.py",
        "utils/text.py",
        "workflows.py",
    ]


def test_src_layout_with_root_dir(tmp_path: Path) -> None:
    project = copy_project("src_layout", tmp_path / "proj")
    root = project / "src"
    found = run(root, root / "weather" / "workflows.py", "env")
    assert [e.name for e in found.environments] == ["weather"]
    assert rel(found.loaded_files, root) == [
        "weather/__init__.py",
        "weather/convert.py",
        "weather/workflows.py",
    ]
    # Imported under its dotted path from root_dir: the name the task resolver uses in the container.
    task = found.environments[0].env.tasks["weather.fahrenheit"]
    assert task.func.__module__ == "weather.workflows"


def test_file_outside_root_dir_is_a_usage_error(tmp_path: Path) -> None:
    project = copy_project("src_layout", tmp_path / "proj")
    with pytest.raises(UsageError, match="is not inside --root-dir"):
        run(project / "src" / "weather", project / "pyproject.toml", "env")


def test_monorepo_service_imports_shared_library(tmp_path: Path) -> None:
    root = copy_project("monorepo", tmp_path / "mono")
    found = run(root, "services/ml_service/workflows.py", "env")
    assert [e.name for e in found.environments] == ["ml-service"]
    assert rel(found.loaded_files, root) == [
        "libs/__init__.py",
        "libs/common/__init__.py",
        "libs/common/features.py",
        "services/ml_service/workflows.py",
    ]


def test_all_selects_every_environment_created_while_importing(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    found = run(root, "pipeline/viz.py", all_envs=True)
    assert [e.name for e in found.environments] == ["prep", "ml", "viz"]
    assert {e.name: e.var for e in found.environments} == {"prep": "prep", "ml": "ml", "viz": "viz"}
    assert {e.name: e.file.name for e in found.environments} == {
        "prep": "prep.py",
        "ml": "ml.py",
        "viz": "viz.py",
    }


def test_recursive_skips_ignored_paths(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    write(
        root,
        {
            ".gitignore": "scratch/\n",
            "scratch/broken.py": "raise RuntimeError('must never be imported')\n",
            ".venv/lib/bad.py": "raise RuntimeError('virtualenvs are skipped')\n",
            "extra/more.py": f"import flyte\nextra = flyte.TaskEnvironment(name='extra', image={IMAGE!r})\n",
        },
    )
    found = run(root, ".", recursive=True)
    assert sorted(e.name for e in found.environments) == ["extra", "ml", "prep", "viz"]


def test_all_on_a_directory_imports_its_files_only(tmp_path: Path) -> None:
    line = "import flyte\n{0} = flyte.TaskEnvironment(name='{0}', image='python:3.11')\n"
    root = write(
        tmp_path / "p", {"jobs/one.py": line.format("one"), "jobs/deeper/two.py": line.format("two")}
    )
    assert [e.name for e in run(root, "jobs", all_envs=True).environments] == ["one"]
    assert sorted(e.name for e in run(root, "jobs", recursive=True).environments) == ["one", "two"]


def test_directory_needs_recursive_or_all(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    with pytest.raises(UsageError, match="pipeline is a directory: use --recursive DIR"):
        run(root, "pipeline")
    with pytest.raises(UsageError, match="cannot be combined with --all or --recursive"):
        run(root, "pipeline/viz.py", "viz", all_envs=True)


def test_environment_chosen_by_current_domain(tmp_path: Path) -> None:
    root = copy_project("by_domain", tmp_path / "dom")
    assert [e.name for e in run(root, "workflows.py", "env", domain="development").environments] == [
        "etl-dev"
    ]
    assert [e.name for e in run(root, "workflows.py", "env", domain="production").environments] == [
        "etl-prod"
    ]


def test_discovering_twice_gives_the_same_answer(tmp_path: Path) -> None:
    root = copy_project("flat", tmp_path / "flat")
    registry_before = len(list_loaded_environments())
    first = run(root, "workflows.py", all_envs=True)
    second = run(root, "workflows.py", all_envs=True)
    assert [e.name for e in first.environments] == [e.name for e in second.environments] == ["flat"]
    assert first.loaded_files == second.loaded_files
    # Re-imported, not served stale from sys.modules; and flyte's global registry does not grow.
    assert first.environments[0].env is not second.environments[0].env
    assert len(list_loaded_environments()) == registry_before


def test_same_module_names_in_two_projects_do_not_leak(tmp_path: Path) -> None:
    one = write(
        tmp_path / "one",
        {"workflows.py": f"import flyte\na = flyte.TaskEnvironment(name='a', image={IMAGE!r})\n"},
    )
    two = write(
        tmp_path / "two",
        {"workflows.py": f"import flyte\nb = flyte.TaskEnvironment(name='b', image={IMAGE!r})\n"},
    )
    assert [e.name for e in run(one, "workflows.py", all_envs=True).environments] == ["a"]
    assert [e.name for e in run(two, "workflows.py", all_envs=True).environments] == ["b"]
    assert [e.name for e in run(one, "workflows.py", all_envs=True).environments] == ["a"]


def test_edit_between_discoveries_is_seen(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p", {"wf.py": f"import flyte\nenv = flyte.TaskEnvironment(name='v1', image={IMAGE!r})\n"}
    )
    assert run(root, "wf.py", "env").environments[0].name == "v1"
    write(root, {"wf.py": f"import flyte\nenv = flyte.TaskEnvironment(name='v2-renamed', image={IMAGE!r})\n"})
    assert run(root, "wf.py", "env").environments[0].name == "v2-renamed"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match=r"nope\.py: no such file"):
        run(tmp_path, "nope.py", "env")


def test_unknown_var_lists_the_environments(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    with pytest.raises(DiscoveryError) as caught:
        run(root, "pipeline/viz.py", "vis")
    assert (
        str(caught.value)
        == "pipeline/viz.py: no variable 'vis'; TaskEnvironment or AppEnvironment variables in it: ml, viz"
    )
    assert caught.value.file == str(root / "pipeline" / "viz.py")


def test_var_that_is_not_an_environment(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    with pytest.raises(
        DiscoveryError, match=r"'train' is of type AsyncFunctionTaskTemplate, not a flyte\.TaskEnvironment"
    ):
        run(root, "pipeline/viz.py", "train")


def test_file_without_var_or_all(tmp_path: Path) -> None:
    root = copy_project("hybrid", tmp_path / "h")
    with pytest.raises(
        UsageError, match=r"name the environment to deploy \(FILE VAR\) or pass --all; .*: dev, prod"
    ):
        run(root, "workflows.py")


def test_import_error_points_at_the_users_line(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p",
        {
            "helpers/__init__.py": "",
            "helpers/config.py": "import os\n\nSETTING = os.environ['FLYTE_DEPLOY_SURELY_UNSET_VAR']\n",
            "wf.py": "import flyte\nfrom helpers.config import SETTING\n",
        },
    )
    with pytest.raises(DiscoveryError) as caught:
        run(root, "wf.py", "env")
    error = caught.value
    assert str(error) == (
        "helpers/config.py:3: KeyError: 'FLYTE_DEPLOY_SURELY_UNSET_VAR' (while importing wf.py)"
    )
    assert (error.file, error.line) == (str(root / "helpers" / "config.py"), 3)


def test_file_folder_is_an_import_root_like_flyte_deploy(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p",
        {
            "svc/wf.py": "import flyte\n\nimport sibling_helper\n\nenv = flyte.TaskEnvironment(name='svc')\n",
            "svc/sibling_helper.py": "",
        },
    )
    path_before = list(sys.path)
    found = run(root, "svc/wf.py", "env")
    assert [e.name for e in found.environments] == ["svc"]
    assert found.sys_paths == (root, root / "svc")
    assert "svc/sibling_helper.py" in rel(found.loaded_files, root)
    assert sys.path == path_before  # the folder was an import root only while importing


def test_missing_module_hints_at_root_dir(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"svc/wf.py": "import flyte\n\nimport not_written_yet\n"})
    with pytest.raises(DiscoveryError) as caught:
        run(root, "svc/wf.py", "env")
    assert str(caught.value) == (
        "svc/wf.py:3: ModuleNotFoundError: No module named 'not_written_yet' "
        f"(imports resolve from --root-dir {root})"
    )


def test_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"wf.py": "import flyte\n\ndef broken(:\n    pass\n"})
    with pytest.raises(DiscoveryError) as caught:
        run(root, "wf.py", "env")
    assert str(caught.value).startswith("wf.py:3: SyntaxError: ")
    assert caught.value.line == 3


def test_invalid_environment_name_is_reported_at_its_line(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"wf.py": "import flyte\n\nenv = flyte.TaskEnvironment(name='Bad Name')\n"})
    with pytest.raises(DiscoveryError, match=r"^wf\.py:3: ValueError: Environment name 'Bad Name' must be"):
        run(root, "wf.py", "env")


def test_no_environments_found(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"lib.py": "X = 1\n", "pkg/other.py": "Y = 2\n"})
    with pytest.raises(
        DiscoveryError, match=r"lib\.py: no flyte.TaskEnvironment or flyte.app.AppEnvironment found in it"
    ):
        run(root, "lib.py", all_envs=True)
    with pytest.raises(
        DiscoveryError, match=r"pkg: no flyte.TaskEnvironment or flyte.app.AppEnvironment found under it"
    ):
        run(root, "pkg", recursive=True)


def test_two_environments_with_one_name(tmp_path: Path) -> None:
    env_line = f"import flyte\nenv = flyte.TaskEnvironment(name='shared', image={IMAGE!r})\n"
    root = write(tmp_path / "p", {"jobs/a.py": env_line, "jobs/b.py": env_line})
    with pytest.raises(
        DiscoveryError, match=r"two different environments are named 'shared': jobs/a\.py and jobs/b\.py"
    ):
        run(root, "jobs", recursive=True)


def test_module_name_taken_by_the_standard_library(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p", {"json.py": f"import flyte\nenv = flyte.TaskEnvironment(name='j', image={IMAGE!r})\n"}
    )
    with pytest.raises(DiscoveryError, match="imports as module 'json', but that name is already taken"):
        run(root, "json.py", "env")


def test_errors_leave_no_environment_behind(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p",
        {
            "wf.py": f"import flyte\nenv = flyte.TaskEnvironment(name='half', image={IMAGE!r})\n"
            "raise RuntimeError('boom')\n"
        },
    )
    before = len(list_loaded_environments())
    with pytest.raises(DiscoveryError, match=r"wf\.py:3: RuntimeError: boom"):
        run(root, "wf.py", "env")
    assert len(list_loaded_environments()) == before


def test_cli_prints_one_error_line(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", "pipeline/viz.py", "nothere", "--mode", "bundle"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: pipeline/viz.py: no variable 'nothere'; TaskEnvironment or AppEnvironment variables in it: "
        "ml, viz"
    ]
    assert result.stdout == ""

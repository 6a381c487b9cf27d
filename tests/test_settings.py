"""One settings model: the README's table is generated from it, and flags, variables and defaults keep
their order of precedence everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.errors import UsageError
from deployer.settings import TABLE_END, TABLE_START, load_settings, markdown_table, options

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_table_is_the_generated_one() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    assert readme[start:end] == markdown_table(), "run `flyte-deploy config --markdown` and paste its table"


def test_every_option_says_what_it_means_and_where_it_is_read() -> None:
    for info in options():
        assert info.doc.endswith("."), info.name
        assert info.env and all(e.isupper() for e in info.env), info.name


def test_a_flag_wins_over_its_variable_and_the_variable_over_the_default() -> None:
    environ = {"FLYTE_DEPLOY_PROJECT": "from-env", "FLYTE_DEPLOY_MODE": "bundle"}
    settings = load_settings({"project": "from-flag"}, environ=environ)
    assert (settings.project, settings.mode.value, settings.domain) == ("from-flag", "bundle", "development")


def test_list_variables_split_on_whitespace_and_commas() -> None:
    environ = {"FLYTE_DEPLOY_BASE_IMAGE_MIRROR": "a=b, c=d\ne=f", "FLYTE_DEPLOY_IMAGES": "x=y"}
    settings = load_settings(environ=environ)
    assert settings.base_image_mirrors == ("a=b", "c=d", "e=f") and settings.images == ("x=y",)


@pytest.mark.parametrize(
    ("given", "environ", "message"),
    [
        (
            {},
            {"FLYTE_DEPLOY_MODE": "kubernetes"},
            "FLYTE_DEPLOY_MODE='kubernetes': use one of: auto, container, bundle",
        ),
        ({}, {"FLYTE_DEPLOY_BUILD_CONCURRENCY": "0"}, "FLYTE_DEPLOY_BUILD_CONCURRENCY='0': "),
        (
            {"copy_style": "everything"},
            {},
            "--copy-style 'everything': use one of: loaded_modules, auto, all, none",
        ),
    ],
)
def test_a_bad_value_names_where_it_came_from(
    given: dict[str, str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError) as err:
        load_settings(given, environ=environ)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_cli_reads_the_variable_when_the_flag_is_absent(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import flyte\nenv = flyte.TaskEnvironment(name='app')\n")
    env = {**os.environ, "FLYTE_DEPLOY_PROJECT": "from-env", "FLYTE_DEPLOY_COPY_STYLE": "bogus"}
    bad = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", "app.py", "env"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().splitlines()[-1].startswith("error: FLYTE_DEPLOY_COPY_STYLE='bogus': use one of:")
    )
    env["FLYTE_DEPLOY_COPY_STYLE"] = "all"
    good = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", "app.py", "env", "--json", "--mode", "bundle"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    import json

    plan = json.loads(good.stdout)
    assert (plan["project"], plan["copy_style"]) == ("from-env", "all")
    flagged = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "plan",
            "app.py",
            "env",
            "--json",
            "--mode",
            "bundle",
            "-p",
            "flag",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(flagged.stdout)["project"] == "flag"

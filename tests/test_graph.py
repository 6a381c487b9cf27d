"""The depends_on closure: deploy order, each environment once, cycles named with their path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.discovery import discover
from deployer.errors import GraphError
from deployer.graph import resolve
from deployer.models import EnvGraph
from deployer.request import DeployRequest
from tests.projects import copy_project

IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"


def graph_of(root: Path, path: str, var: str | None = None, **flags: object) -> EnvGraph:
    request = DeployRequest.of(root / path, var, root_dir=root, **flags)
    return resolve(discover(request.selection, request.settings.root))


def project(tmp_path: Path, source: str) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    header = f"import flyte\n\nIMAGE = {IMAGE!r}\n\n\ndef env(name, *deps):\n"
    header += "    return flyte.TaskEnvironment(name=name, image=IMAGE, depends_on=list(deps))\n\n\n"
    (root / "wf.py").write_text(header + textwrap.dedent(source))
    return root


def test_deploying_viz_brings_its_dependencies_first(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    graph = graph_of(root, "pipeline/viz.py", "viz")
    assert graph.order == ("prep", "ml", "viz")
    assert [e.name for e in graph.environments] == ["prep", "ml", "viz"]
    assert graph.env("viz").var == "viz"
    assert graph.env("prep").file == root / "pipeline" / "prep.py"
    assert graph.env("prep").var == "prep"


def test_middle_of_the_chain_leaves_dependents_out(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    assert graph_of(root, "pipeline/ml.py", "ml").order == ("prep", "ml")


def test_shared_dependency_is_deployed_once(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        base = env("base")
        left = env("left", base)
        right = env("right", base)
        """,
    )
    graph = graph_of(root, "wf.py", all_envs=True)
    assert graph.order == ("base", "left", "right")


def test_ties_are_broken_by_name(tmp_path: Path) -> None:
    # Created in reverse alphabetical order; the order must not follow creation or depends_on order.
    root = project(
        tmp_path,
        """
        zeta = env("zeta")
        mid = env("mid")
        alpha = env("alpha")
        top = env("top", zeta, alpha, mid)
        beta = env("beta", zeta)
        """,
    )
    assert graph_of(root, "wf.py", all_envs=True).order == ("alpha", "mid", "zeta", "beta", "top")
    assert graph_of(root, "wf.py", "top").order == ("alpha", "mid", "zeta", "top")


def test_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        a = env("a")
        c = env("c", a)
        b = env("b", c)
        a.add_dependency(b)
        unrelated = env("unrelated")
        """,
    )
    with pytest.raises(GraphError) as caught:
        graph_of(root, "wf.py", "a")
    assert str(caught.value) == "depends_on cycle: a -> b -> c -> a"


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        solo = env("solo")
        solo.depends_on.append(solo)
        """,
    )
    with pytest.raises(GraphError, match="depends_on cycle: solo -> solo"):
        graph_of(root, "wf.py", "solo")


def test_two_environments_with_one_name_in_the_closure(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        first = env("twin")
        user = env("user", first)
        second = env("twin")
        other = env("other", second)
        both = env("both", user, other)
        """,
    )
    with pytest.raises(GraphError, match="two different environments are named 'twin'"):
        graph_of(root, "wf.py", "both")


def test_graph_carries_the_loaded_files(tmp_path: Path) -> None:
    root = copy_project("chain", tmp_path / "chain")
    graph = graph_of(root, "pipeline/viz.py", "viz")
    assert graph.root_dir == root
    assert [f.name for f in graph.loaded_files] == ["__init__.py", "ml.py", "prep.py", "viz.py"]

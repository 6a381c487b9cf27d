"""The module boundaries of DESIGN.md "Round 2", checked on the source tree (issue 18's "done when").

Each rule is a function over a tree of Python files, so the planted-offender tests below prove that
every rule notices the violation it exists for.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployer.settings import options
from tests.fixtures.pipeline import REPO_ROOT

Rule = Callable[[Path], list[str]]


def _modules(root: Path, package: str) -> Iterator[tuple[str, Path, ast.Module]]:
    """(dotted name, path, syntax tree) of every module under root/package."""
    for path in sorted((root / package).rglob("*.py")):
        # A package's own module keeps its `__init__`, so relative imports resolve alike everywhere.
        yield (
            ".".join(path.relative_to(root).with_suffix("").parts),
            path,
            ast.parse(path.read_text(), filename=str(path)),
        )


def _imports(tree: ast.Module, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import, relative ones resolved against `module`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _first_per_line(problems: list[str]) -> list[str]:
    """One problem per offending line, however many names it imports."""
    seen: dict[str, str] = {}
    for problem in problems:
        seen.setdefault(problem.split(" ", 1)[0], problem)
    return list(seen.values())


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _where(path: Path, root: Path, line: int) -> str:
    return f"{path.relative_to(root)}:{line}"


def adapter_imports(root: Path) -> list[str]:
    """The Action adapter only translates: it reaches the pipeline, never its stages' internals."""
    banned = (
        "deployer.images",
        "deployer.bundle",
        "deployer.storage",
        "deployer.controlplane",
        "deployer.commands",
    )
    return _first_per_line(
        [
            f"{_where(path, root, line)} imports {name}"
            for module, path, tree in _modules(root, "entrypoint")
            for line, name in _imports(tree, module)
            if any(_inside(name, b) for b in banned)
        ]
    )


def commands_are_not_a_library(root: Path) -> list[str]:
    return _first_per_line(
        [
            f"{_where(path, root, line)} imports {name}"
            for module, path, tree in [*_modules(root, "deployer"), *_modules(root, "entrypoint")]
            if not _inside(module, "deployer.commands") and module != "deployer.cli"
            for line, name in _imports(tree, module)
            if _inside(name, "deployer.commands")
        ]
    )


def store_stays_in_the_control_plane(root: Path) -> list[str]:
    return _first_per_line(
        [
            f"{_where(path, root, line)} imports {name}"
            for module, path, tree in [*_modules(root, "deployer"), *_modules(root, "entrypoint")]
            if not _inside(module, "deployer.controlplane")
            for line, name in _imports(tree, module)
            if _inside(name, "deployer.controlplane.store")
        ]
    )


def private_sdk_imports(root: Path) -> list[str]:
    """Private `flyte` modules (`flyte._x`, `flyte.types._x`) are imported by deployer/sdk.py alone."""

    def private(name: str) -> bool:
        parts = name.split(".")
        return parts[0] == "flyte" and any(p.startswith("_") for p in parts[1:])

    return _first_per_line(
        [
            f"{_where(path, root, line)} imports {name}"
            for module, path, tree in [*_modules(root, "deployer"), *_modules(root, "entrypoint")]
            if module != "deployer.sdk"
            for line, name in _imports(tree, module)
            if private(name)
        ]
    )


_RENDERERS = ("deployer.commands", "deployer.output", "deployer.cli")


def core_never_prints(root: Path) -> list[str]:
    """Only the CLI's rendering modules print or use rich; the rest reports through a Progress."""
    problems: list[str] = []
    for module, path, tree in _modules(root, "deployer"):
        if any(_inside(module, r) for r in _RENDERERS):
            continue
        for line, name in _imports(tree, module):
            if _inside(name, "rich"):
                problems.append(f"{_where(path, root, line)} imports rich")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                problems.append(f"{_where(path, root, node.lineno)} calls print")
    return _first_per_line(problems)


def _string_constants(tree: ast.Module) -> Iterator[ast.Constant]:
    """String literals that are code: not docstrings, nor the attribute docs after a field."""
    documentation = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            yield node


def settings_variables(root: Path) -> list[str]:
    """`FLYTE_DEPLOY_*` variables are named by the settings model and the flags declared from it only."""
    owners = {"deployer.settings", "deployer.commands.options"}
    found = {
        module: path
        for module, path, tree in [*_modules(root, "deployer"), *_modules(root, "entrypoint")]
        if any("FLYTE_DEPLOY_" in node.value for node in _string_constants(tree))
    }
    return [
        f"{path.relative_to(root)} names a FLYTE_DEPLOY_ variable"
        for module, path in found.items()
        if module not in owners
    ]


def _shared_flags() -> set[str]:
    return {flag for info in options() for flag in info.flags if flag.startswith("--")}


def commands_declare_no_shared_flags(root: Path) -> list[str]:
    """Shared flags are declared once (commands/options.py, from the settings model). `serve` is
    exempt: its --project is the list of projects a server starts with, not the deploy target."""
    shared = _shared_flags()
    exempt = {"deployer.commands.options", "deployer.commands.serve"}
    problems: list[str] = []
    for module, path, tree in _modules(root, "deployer"):
        if not _inside(module, "deployer.commands") or module in exempt:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("Option", "Argument"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in shared:
                        problems.append(f"{_where(path, root, node.lineno)} declares {arg.value} itself")
    return problems


RULES: dict[str, Rule] = {
    "adapter_imports": adapter_imports,
    "commands_are_not_a_library": commands_are_not_a_library,
    "store_stays_in_the_control_plane": store_stays_in_the_control_plane,
    "private_sdk_imports": private_sdk_imports,
    "core_never_prints": core_never_prints,
    "settings_variables": settings_variables,
    "commands_declare_no_shared_flags": commands_declare_no_shared_flags,
}


@pytest.mark.parametrize("rule", RULES, ids=list(RULES))
def test_the_tree_keeps_the_rule(rule: str) -> None:
    assert RULES[rule](REPO_ROOT) == []


# One offender per rule, planted in an otherwise empty tree: the rule must name its file.
PLANTED = {
    "adapter_imports": ("entrypoint/event.py", "from deployer.images import build\n"),
    "commands_are_not_a_library": ("deployer/report/render.py", "from ..commands import plan\n"),
    "store_stays_in_the_control_plane": (
        "deployer/preview.py",
        "from deployer.controlplane.store import TaskStore\n",
    ),
    "private_sdk_imports": (
        "deployer/runner/io.py",
        "from flyte.types._json_coercion import coerce_json_value\n",
    ),
    "core_never_prints": ("deployer/runner/local_venv.py", "def f():\n    print('creating a runtime')\n"),
    "settings_variables": ("entrypoint/action.py", "TOKEN = 'FLYTE_DEPLOY_API_KEY'\n"),
    "commands_declare_no_shared_flags": (
        "deployer/commands/run.py",
        "import typer\nP = typer.Option('--project', help='Flyte project.')\n",
    ),
}


@pytest.mark.parametrize("rule", RULES, ids=list(RULES))
def test_each_rule_names_a_planted_offender(rule: str, tmp_path: Path) -> None:
    for package in ("deployer", "entrypoint"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(
            '"""FLYTE_DEPLOY_ in a docstring is documentation."""\n'
        )
    relative, source = PLANTED[rule]
    offender = tmp_path / relative
    offender.parent.mkdir(parents=True, exist_ok=True)
    offender.write_text(source)

    problems = RULES[rule](tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(relative)


def test_a_relative_import_is_resolved_before_it_is_judged(tmp_path: Path) -> None:
    (tmp_path / "deployer" / "commands").mkdir(parents=True)
    (tmp_path / "deployer" / "commands" / "plan.py").write_text("from . import options\n")
    (tmp_path / "deployer" / "output.py").write_text("from .commands import plan\n")
    (tmp_path / "entrypoint").mkdir()
    assert commands_are_not_a_library(tmp_path) == ["deployer/output.py:1 imports deployer.commands.plan"]

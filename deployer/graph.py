"""The `depends_on` closure of the selected environments, in deploy order.

Flyte walks `depends_on` into a dict and deploys everything at once; we deploy each environment once,
dependencies first (ties broken by name, so the order never changes between runs), and name the
cycle when there is one. Task and app environments share the graph: a task environment may depend on
an app (its tasks call it) and an app on task environments, in any mix.
"""

from __future__ import annotations

import heapq
from pathlib import Path

import flyte

from deployer import sdk
from deployer.discovery import is_deployable
from deployer.errors import GraphError
from deployer.models import DiscoveredEnv, Discovery, EnvGraph


def resolve(discovery: Discovery) -> EnvGraph:
    """Close the selected roots over `depends_on` and order them topologically."""
    known = {id(d.env): d for d in (*discovery.all_environments, *discovery.environments)}
    nodes = _closure(discovery, known)
    deps = {name: sorted({dep.name for dep in node.env.depends_on}) for name, node in nodes.items()}
    _check_cycles(deps)
    order = _topological(deps)
    return EnvGraph(
        root_dir=discovery.root_dir,
        order=tuple(order),
        environments=tuple(nodes[name] for name in order),
        loaded_files=discovery.loaded_files,
        sys_paths=discovery.sys_paths,
        warnings=discovery.warnings,
    )


def _closure(discovery: Discovery, known: dict[int, DiscoveredEnv]) -> dict[str, DiscoveredEnv]:
    nodes: dict[str, DiscoveredEnv] = {}
    stack = sorted(discovery.environments, key=lambda d: d.name, reverse=True)
    while stack:
        node = stack.pop()
        seen = nodes.get(node.name)
        if seen is not None:
            if seen.env is not node.env:
                raise GraphError(
                    f"two different environments are named {node.name!r}: {_where(seen, discovery.root_dir)} "
                    f"and {_where(node, discovery.root_dir)}",
                    file=str(node.file),
                )
            continue
        nodes[node.name] = node
        for dep in sorted(node.env.depends_on, key=lambda e: e.name, reverse=True):
            if not is_deployable(dep):
                raise GraphError(
                    f"environment {node.name!r} depends on {type(dep).__name__} {dep.name!r}: "
                    "only TaskEnvironments and AppEnvironments can be deployed",
                    file=str(node.file),
                )
            stack.append(known.get(id(dep)) or _undiscovered(dep, node))
    return nodes


def _undiscovered(env: flyte.Environment, parent: DiscoveredEnv) -> DiscoveredEnv:
    """A dependency created outside the imported files (e.g. in an installed package)."""
    file = sdk.declaring_file(env) or parent.file
    return DiscoveredEnv(name=env.name, env=env, var=None, file=file)


def _where(node: DiscoveredEnv, root_dir: Path) -> str:
    file = node.file
    return file.relative_to(root_dir).as_posix() if file.is_relative_to(root_dir) else str(file)


def _check_cycles(deps: dict[str, list[str]]) -> None:
    """Depth-first search in name order; the first back edge found is reported as its full path."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(name: str) -> None:
        path.append(name)
        on_path.add(name)
        for dep in deps[name]:
            if dep in on_path:
                cycle = [*path[path.index(dep) :], dep]
                raise GraphError(f"depends_on cycle: {' -> '.join(cycle)}")
            if dep not in done:
                visit(dep)
        on_path.discard(path.pop())
        done.add(name)

    for name in sorted(deps):
        if name not in done:
            visit(name)


def _topological(deps: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm taking the smallest ready name each time: dependencies first, stable ties."""
    waiting = {name: len(set(ds)) for name, ds in deps.items()}
    users: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for dep in set(ds):
            users[dep].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    return order

"""Registering a whole deploy at scale: one bulk check, dependencies first, independent environments at
once, and nothing to serialize or register when the control plane already holds this exact deploy.

- `held_tasks`: one ListTasks with a `version` filter answers which of the deploy's tasks the plane
  holds under this version (not one GetTaskDetails per task).
- A deploy's `fingerprint` is a hash of everything its specs are made of (the plan, the code files it
  loaded, the images (by digest, or by build identity for those built here), the bundle digest, the git
  source link, the SDK and flyte-deploy versions), computed without serializing anything. After a
  deploy lands, a `Receipt` records the fingerprint for (control plane, org, project, domain, version)
  in the state dir. When the receipt matches and the bulk check finds every task, the deploy is
  already there: nothing is serialized, uploaded or registered (images to build are looked up as
  always, and must be the ones registered). Without a receipt (a fresh CI machine) the deploy takes the
  full path, where identical tasks come back "unchanged" and different ones are refused.
- `register`: tasks the plane holds under this version are compared by spec digest (a different one
  refuses the whole deploy before anything is written); the others are registered level by level of
  the dependency graph, every environment of a level at once, `plane.concurrency` calls in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.controlplane.base import ControlPlane
from deployer.controlplane.specs import spec_differences, spec_digest
from deployer.controlplane.store import ignore_in_git
from deployer.errors import ControlPlaneError, VersionConflict
from deployer.models import Plan, PlannedEnv

FINGERPRINT_SCHEME = "1"
RECEIPTS_DIR = "receipts"


# ---------------------------------------------------------------------------------------------- fingerprint


def fingerprint(
    plan: Plan,
    *,
    org: str,
    images: Mapping[str, str],
    code_files: Sequence[Path],
    root_dir: Path,
    sys_paths: Sequence[Path],
    source_identity: str,
) -> str:
    """A hash of everything the deploy's task specs are made of (see the module doc)."""
    import flyte

    import deployer

    sha = hashlib.sha256()

    def add(label: str, value: object) -> None:
        sha.update(f"{label}\0{json.dumps(value, sort_keys=True, default=str)}\n".encode())

    add("scheme", FINGERPRINT_SCHEME)
    add("tools", [deployer.__version__, flyte.__version__])
    add("target", [plan.version, plan.project, plan.domain, org, str(plan.copy_style)])
    add(
        "environments",
        [env.model_dump(mode="json", exclude={"mode_reason", "source_file"}) for env in plan.environments],
    )
    add("images", dict(sorted(images.items())))
    add("bundle", plan.bundle.digest if plan.bundle else None)
    add("source", source_identity)
    root = root_dir.resolve()
    add("sys_paths", [_relative(Path(p), root) for p in sys_paths])
    for path in sorted({Path(p).resolve() for p in code_files}):
        try:
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            content = "unreadable"
        add("file", [_relative(path, root), content])
    return sha.hexdigest()


def _relative(path: Path, root: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


# ---------------------------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Receipt:
    fingerprint: str
    tasks: tuple[str, ...]
    bundle_uri: str | None
    images: Mapping[str, str] = field(default_factory=dict)
    """The image each environment's tasks were registered with."""


class Receipts:
    """What this machine registered where: `STATE_DIR/receipts/<hash of the target>.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / RECEIPTS_DIR

    def _path(self, plane: str, org: str, project: str, domain: str, version: str) -> Path:
        key = hashlib.sha256("\0".join((plane, org, project, domain, version)).encode()).hexdigest()[:32]
        return self.dir / f"{key}.json"

    def read(self, plane: str, org: str, project: str, domain: str, version: str) -> Receipt | None:
        try:
            data = json.loads(self._path(plane, org, project, domain, version).read_text())
            return Receipt(
                fingerprint=str(data["fingerprint"]),
                tasks=tuple(str(t) for t in data["tasks"]),
                bundle_uri=data.get("bundle_uri"),
                images={str(k): str(v) for k, v in data["images"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, plane: str, org: str, project: str, domain: str, version: str, receipt: Receipt) -> None:
        """Best effort: a receipt only saves time, so a read-only state dir costs a full check next time."""
        path = self._path(plane, org, project, domain, version)
        document = {
            "fingerprint": receipt.fingerprint,
            "tasks": list(receipt.tasks),
            "bundle_uri": receipt.bundle_uri,
            "images": dict(receipt.images),
            "control_plane": plane,
            "target": [org, project, domain, version],
            "written_at": time.time(),
        }
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ignore_in_git(self.state_dir)
            self.dir.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".receipt-")
            with os.fdopen(fd, "w") as out:
                json.dump(document, out)
            os.replace(tmp, path)
        except OSError:
            return


def held_tasks(plane: ControlPlane, plan: Plan, org: str) -> set[str]:
    """Names of the plan's tasks the plane holds under the plan's version (one bulk listing)."""
    return set(plane.tasks_at_version(plan.project, plan.domain, org, plan.version))


def already_deployed(receipt: Receipt | None, expected: str, planned: Sequence[str], held: set[str]) -> bool:
    return receipt is not None and receipt.fingerprint == expected and set(planned) <= held


# ---------------------------------------------------------------------------------------------- register


R = TypeVar("R")


def levels(environments: Sequence[PlannedEnv]) -> list[list[PlannedEnv]]:
    """The environments grouped by depth in the dependency graph (an environment's dependencies are all
    in earlier groups), each group in plan order."""
    depth: dict[str, int] = {}
    for env in environments:  # the plan is in topological order
        depth[env.name] = 1 + max((depth[d] for d in env.depends_on if d in depth), default=-1)
    grouped: dict[int, list[PlannedEnv]] = {}
    for env in environments:
        grouped.setdefault(depth[env.name], []).append(env)
    return [grouped[d] for d in sorted(grouped)]


def refuse_conflicts(
    plane: ControlPlane, plan: Plan, org: str, specs: Mapping[str, list[TaskSpec]], held: set[str]
) -> set[str]:
    """Versions are immutable: refuse the whole deploy, before anything is written, when a task the plane
    holds under this version has a different spec. Returns the names of held tasks that are identical."""
    wanted = [
        spec
        for env in plan.environments
        for spec in specs.get(env.name, ())
        if spec.task_template.id.name in held
    ]
    if not wanted:
        return set()

    def fetch(spec: TaskSpec) -> tuple[TaskSpec, Any]:
        name = spec.task_template.id.name
        return spec, plane.get_task(plan.project, plan.domain, org, name, plan.version)

    with ThreadPoolExecutor(max_workers=max(1, plane.concurrency)) as pool:
        found = list(pool.map(fetch, wanted))
    identical: set[str] = set()
    for spec, existing in found:  # in deploy order: the first conflict named is the first in the plan
        name = spec.task_template.id.name
        if existing is None:
            continue
        if spec_digest(existing.spec) == spec_digest(spec):
            identical.add(name)
            continue
        fields = ", ".join(spec_differences(existing.spec, spec)) or "encoding"
        raise VersionConflict(
            f"task {name} version {plan.version} already exists in {plan.project}/{plan.domain} with a "
            f"different spec (differs in: {fields}); versions are immutable: commit the change or pass "
            "a new --version. Nothing was registered"
        )
    return identical


def run_by_level(
    plane: ControlPlane,
    plan: Plan,
    job: Callable[[PlannedEnv], R],
    on_env: Callable[[PlannedEnv, R | None, str | None], None],
) -> bool:
    """Run `job` for every environment, level by level of the dependency graph, the environments of a level
    at once (`plane.concurrency` at a time); `on_env` gets each result, or None and the error that
    stopped it. Stops after the first level in which an environment fails (later levels are not
    started). Returns whether everything landed."""
    with ThreadPoolExecutor(max_workers=max(1, plane.concurrency)) as pool:
        for level in levels(plan.environments):
            work = {env.name: pool.submit(job, env) for env in level}
            failed = False
            for env in level:
                try:
                    result = work[env.name].result()
                except ControlPlaneError as exc:
                    failed = True
                    on_env(env, None, str(exc))
                else:
                    on_env(env, result, None)
            if failed:
                return False
    return True

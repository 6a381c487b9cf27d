"""Sizes and run counts (full or quick), tool paths and the environment every child process gets."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.synth import TreeSpec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORK = Path(os.environ.get("FLYTE_DEPLOY_BENCH_WORK", "/tmp/flyte-deploy-bench"))
"""Outside any git checkout: Flyte's bundler asks git what is ignored, and bench/_work is."""


@dataclass(frozen=True)
class Profile:
    name: str
    runs: int
    """Measured rounds of the main comparisons (after one warm-up round)."""
    scale_runs: int
    """Measured rounds at the other sizes of a scaling series."""
    warmup: int
    bundle_main: TreeSpec
    bundle_scaling: tuple[TreeSpec, ...]
    """Other tree sizes (with `bundle_main`, the scaling series); the largest is the memory case."""
    plan_main: int
    plan_scaling: tuple[int, ...]
    plan_runs: int
    """Rounds per size, with no warm-up: flyte's dry run takes minutes at 200 environments."""
    plan_reference_max: int
    """Largest monorepo `flyte deploy --dry-run` is run on (it grows faster than linearly)."""
    deploy_runs: int
    register_runs: int
    """Rounds of the registration case (a full deploy by each tool, our no-op redeploys)."""


FULL = Profile(
    name="full",
    runs=5,
    scale_runs=3,
    warmup=1,
    bundle_main=TreeSpec(files=10_000, total_bytes=105_000_000),
    bundle_scaling=(
        TreeSpec(files=1_000, total_bytes=10_500_000),
        TreeSpec(files=50_000, total_bytes=300_000_000),
    ),
    plan_main=200,
    plan_scaling=(20, 1_000),
    plan_runs=3,
    plan_reference_max=200,
    deploy_runs=3,
    register_runs=3,
)
QUICK = Profile(
    name="quick",
    runs=2,
    scale_runs=1,
    warmup=0,
    bundle_main=TreeSpec(files=1_000, total_bytes=10_000_000),
    bundle_scaling=(TreeSpec(files=200, total_bytes=2_000_000), TreeSpec(files=2_000, total_bytes=6_000_000)),
    plan_main=10,
    plan_scaling=(5,),
    plan_runs=1,
    plan_reference_max=10,
    deploy_runs=1,
    register_runs=1,
)


def _stack_env() -> dict[str, str]:
    """The test stack's settings (`scripts/stack env`), unless the caller already exported them."""
    if os.environ.get("FLYTE_DEPLOY_STACK_REGISTRY"):
        return {}
    script = REPO / "scripts" / "stack"
    if not script.is_file():
        return {}
    result = subprocess.run(["bash", str(script), "env"], capture_output=True, text=True, check=False)
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            found[key] = value.strip().strip("'\"")
    return found


@dataclass(frozen=True)
class Context:
    profile: Profile
    work: Path
    env: dict[str, str]
    """Environment for child processes: no GitHub Actions variables, the stack's settings added."""

    @classmethod
    def create(cls, profile: Profile, work: Path) -> Context:
        work.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "FLYTE_DEPLOY_"))}
        env.update(_stack_env())
        env.update({k: v for k, v in os.environ.items() if k.startswith("FLYTE_DEPLOY_STACK")})
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("CI", None)
        return cls(profile=profile, work=work, env=env)

    @property
    def python(self) -> str:
        return str(REPO / ".venv" / "bin" / "python")

    def tool(self, name: str) -> str:
        """A console script of the project's virtualenv (`flyte-deploy`, `flyte`)."""
        path = REPO / ".venv" / "bin" / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `pip install -e '.[test]'` in {REPO}/.venv")
        return str(path)

    def driver(self, name: str) -> str:
        return str(REPO / "bench" / "drivers" / f"{name}.py")

    def scratch(self, name: str) -> Path:
        """An empty directory under the work dir."""
        path = self.work / "scratch" / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def path_without(self, *programs: str) -> str:
        """PATH with `programs` hidden: directories holding them are replaced by a directory of
        symlinks to everything else they hold."""
        shim = self.work / f"path-without-{'-'.join(programs)}"
        dirs: list[str] = []
        for entry in self.env.get("PATH", os.defpath).split(os.pathsep):
            if not entry or not any(os.path.exists(os.path.join(entry, p)) for p in programs):
                dirs.append(entry)
                continue
            if not shim.is_dir():
                shim.mkdir(parents=True)
            for name in os.listdir(entry):
                link = shim / name
                if name not in programs and not link.exists() and not link.is_symlink():
                    link.symlink_to(os.path.join(entry, name))
            if str(shim) not in dirs:
                dirs.append(str(shim))
        return os.pathsep.join(dirs)

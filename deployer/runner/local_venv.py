"""Bundle mode without Docker: run the task's runtime (`a0`) from a local virtualenv.

The virtualenv must carry the same `flyte` release as the task's image. The one flyte-deploy runs
in is reused when it matches (the common case: the bundle-mode image is Flyte's default base for
the SDK that deployed it); otherwise one is created once per (Python, flyte) pair under the state
dir and reused afterwards.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from deployer.errors import RunError
from deployer.progress import QUIET, Progress
from deployer.runner.action import ActionDir

# Flyte's default base images are tagged `py3.11-v2.12.1`: the task's Python and flyte release.
_FLYTE_BASE_TAG = re.compile(r":py(?P<python>\d+\.\d+)-v(?P<flyte>\d+\.\d+\.\d+\S*)$")


def wanted_runtime(image: str) -> tuple[str, str]:
    """(python X.Y, flyte version) the task expects; the current ones when the image doesn't say."""
    import flyte

    match = _FLYTE_BASE_TAG.search(image.split("@", 1)[0])
    if match:
        return match["python"], match["flyte"]
    return f"{sys.version_info.major}.{sys.version_info.minor}", flyte.__version__


def runtime_bin_dir(
    python: str, flyte_version: str, cache: Path, *, log: Path, progress: Progress = QUIET
) -> Path:
    """A bin dir holding `a0` for the wanted Python and flyte release (creating one is reported)."""
    import flyte

    current_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    current_bin = Path(sys.executable).parent
    in_venv = sys.prefix != sys.base_prefix
    matches = (python, flyte_version) == (current_python, flyte.__version__)
    if in_venv and matches and (current_bin / "a0").exists():
        return current_bin
    return _cached_venv(python, flyte_version, cache, log=log, progress=progress)


def _cached_venv(python: str, flyte_version: str, cache: Path, *, log: Path, progress: Progress) -> Path:
    venv = cache / f"py{python}-flyte{flyte_version}"
    ready = venv / ".flyte-deploy-ready"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{venv.name}.lock", "w") as lock:
        # Two runs may want the same runtime at once: one creates it, the other waits and reuses it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return venv / "bin"
        interpreter = shutil.which(f"python{python}")
        if interpreter is None:
            raise RunError(
                f"the task's image expects Python {python}, and no python{python} is on PATH to "
                "create a local runtime for it"
            )
        shutil.rmtree(venv, ignore_errors=True)
        progress.info(f"creating a local runtime: Python {python}, flyte=={flyte_version} in {venv}")
        with open(log, "ab") as out:
            for step in (
                [interpreter, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"flyte=={flyte_version}"],
            ):
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                    raise RunError(f"cannot create the local runtime ({' '.join(step[-3:])}); see {log}")
        ready.touch()
        return venv / "bin"


def run_locally(bin_dir: Path, args: Sequence[str], env: dict[str, str], action: ActionDir) -> int:
    """Run the task's args with the virtualenv's runtime, in the action's code dir (`--dest .`)."""
    executable = shutil.which(args[0], path=str(bin_dir))
    if executable is None:
        raise RunError(f"{args[0]} is not in the local runtime {bin_dir}")
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent)}
    env.pop("PYTHONHOME", None)
    with open(action.log, "ab") as out:
        command = [executable, *args[1:]]
        done = subprocess.run(command, cwd=action.code, env=env, stdout=out, stderr=out, check=False)
    return done.returncode

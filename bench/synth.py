"""Synthetic inputs for the benchmarks, generated from a fixed seed (nothing is downloaded).

`make_tree` writes a project-like tree (Python sources, JSON, CSV, prose and some incompressible
binaries) with a given file count and total size. `make_monorepo` writes a git repository of many
Flyte environments whose `depends_on` edges form chains across files. Both are cached under the
work dir by their parameters, so repeated runs measure the same bytes without regenerating them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.render import render

GENERATOR_VERSION = 3
"""Bumped whenever the generated content changes, so stale caches are rebuilt."""
SEED = 20261122
FILES_PER_DIR = 24
MARKER_SUFFIX = ".synth.json"

_WORDS = tuple(
    " ".join(
        (
            "data frame model task flyte deploy image bundle input output value result config batch",
            "record schema feature train score metric loss epoch shard worker queue event stream parse",
            "load save cache index table column row key map filter reduce join split merge sort group",
            "count total mean user order item price amount status region store customer product session",
            "token request response",
        )
    ).split()
)
_KINDS = (  # (extension, share of files, share of bytes)
    ("py", 0.50, 0.45),
    ("json", 0.15, 0.15),
    ("csv", 0.15, 0.20),
    ("md", 0.10, 0.08),
    ("bin", 0.10, 0.12),
)


@dataclass(frozen=True)
class TreeSpec:
    files: int
    total_bytes: int
    seed: int = SEED


@dataclass(frozen=True)
class MonorepoSpec:
    environments: int
    tasks_per_env: int = 5
    chain: int = 10
    """Environments per team; each depends on the previous one of its team."""
    seed: int = SEED


def _marker(root: Path) -> Path:
    # Beside the tree, not in it: every tool under test must see exactly the generated files.
    return root.parent / f"{root.name}{MARKER_SUFFIX}"


def _cached(root: Path, params: dict[str, object]) -> bool:
    marker = _marker(root)
    return root.is_dir() and marker.is_file() and json.loads(marker.read_text()) == params


def _fresh(root: Path) -> None:
    _marker(root).unlink(missing_ok=True)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)


# ---------------------------------------------------------------------------------------------- tree


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(_WORDS, k=count)


def _python(rng: random.Random, size: int) -> bytes:
    lines: list[str] = ['"""Generated module."""', "", "import os", ""]
    written = 40
    while written < size:
        a, b, c, d = _words(rng, 4)
        n = rng.randrange(1000)
        block = (
            f"def {a}_{b}_{n}({c}, {d}=None):\n"
            f"    # {' '.join(_words(rng, rng.randrange(4, 12)))}\n"
            f"    if {d} is None:\n"
            f"        {d} = {{'{a}': {n}, '{b}': {rng.random():.6f}}}\n"
            f"    return [{c}.{b}(x) for x in {d}.get('{a}', [])]\n\n"
        )
        lines.append(block)
        written += len(block)
    return "\n".join(lines).encode()[:size]


def _json(rng: random.Random, size: int) -> bytes:
    out: list[str] = ["["]
    written = 1
    while written < size:
        a, b = _words(rng, 2)
        item = json.dumps({"id": rng.randrange(10**6), a: rng.random(), b: " ".join(_words(rng, 3))})
        out.append(item + ",")
        written += len(item) + 1
    return "\n".join(out).encode()[:size]


def _csv(rng: random.Random, size: int) -> bytes:
    rows: list[str] = ["id,region,amount,score,status"]
    written = 30
    while written < size:
        region, status = _words(rng, 2)
        row = f"{rng.randrange(10**7)},{region},{rng.randrange(10**5) / 100},{rng.random():.5f},{status}"
        rows.append(row)
        written += len(row) + 1
    return "\n".join(rows).encode()[:size]


def _prose(rng: random.Random, size: int) -> bytes:
    text = " ".join(_words(rng, size // 5 + 1))
    return "\n".join(text[i : i + 78] for i in range(0, len(text), 79)).encode()[:size]


_MAKERS = {"py": _python, "json": _json, "csv": _csv, "md": _prose, "bin": lambda rng, n: rng.randbytes(n)}


def _sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """Log-normal sizes (many small files, a few large), scaled to sum to `total`."""
    raw = [rng.lognormvariate(0.0, 1.2) for _ in range(count)]
    scale = total / sum(raw)
    return [max(1, round(r * scale)) for r in raw]


def make_tree(root: Path, spec: TreeSpec) -> Path:
    """Write `spec.files` files of `spec.total_bytes` in all under `root` (cached by spec)."""
    params = {**asdict(spec), "version": GENERATOR_VERSION}
    if _cached(root, params):
        return root
    _fresh(root)
    rng = random.Random(spec.seed)
    kinds: list[str] = []
    for ext, share, _ in _KINDS:
        kinds += [ext] * round(spec.files * share)
    kinds = (kinds + ["py"] * spec.files)[: spec.files]
    rng.shuffle(kinds)
    budget = {ext: round(spec.total_bytes * share) for ext, _, share in _KINDS}
    sizes: dict[str, list[int]] = {
        ext: _sizes(rng, kinds.count(ext), budget[ext]) for ext, _, _ in _KINDS if ext in kinds
    }
    for index, ext in enumerate(kinds):
        group, slot = divmod(index, FILES_PER_DIR)
        folder = root / f"pkg_{group // 40:03d}" / f"mod_{group % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = sizes[ext].pop()
        (folder / f"f{slot:02d}_{rng.choice(_WORDS)}.{ext}").write_bytes(_MAKERS[ext](rng, size))
    _marker(root).write_text(json.dumps(params))
    return root


def tree_files(root: Path) -> int:
    """Files a copy-style `all` bundle of the tree holds."""
    return sum(len(files) for _, _, files in os.walk(root))


# ---------------------------------------------------------------------------------------------- monorepo

GIT_DATE = "2026-01-02T03:04:05+00:00"


def _git(root: Path, *args: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@flyte-deploy.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@flyte-deploy.invalid",
        "GIT_AUTHOR_DATE": GIT_DATE,
        "GIT_COMMITTER_DATE": GIT_DATE,
    }
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def git_commit_all(root: Path, message: str) -> None:
    """Commit everything under `root` (initialising the repository when needed)."""
    if not (root / ".git").exists():
        _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "--allow-empty", "-m", message)


def git_tag(root: Path, name: str) -> None:
    """A lightweight tag on HEAD."""
    _git(root, "tag", name)


def make_monorepo(root: Path, spec: MonorepoSpec) -> Path:
    """A committed repository: `teams/team_NNN/env_MMM.py`, one environment per file, chained by
    `depends_on` (and a task call) to the previous environment of its team; `libs/common.py` is
    imported by every file. All images are `Image.from_ref_name("base")`."""
    params = {**asdict(spec), "version": GENERATOR_VERSION}
    if _cached(root, params):
        return root
    _fresh(root)
    rng = random.Random(spec.seed)
    (root / "libs").mkdir()
    (root / "libs" / "__init__.py").write_text("")
    (root / "libs" / "common.py").write_text(render("monorepo/common.py.j2"))
    (root / "teams").mkdir()
    (root / "teams" / "__init__.py").write_text("")
    for index in range(spec.environments):
        team, position = divmod(index, spec.chain)
        package = root / "teams" / f"team_{team:03d}"
        if position == 0:
            package.mkdir()
            (package / "__init__.py").write_text("")
        upstream = f"teams.team_{team:03d}.env_{index - 1:04d}" if position else None
        source = render(
            "monorepo/env.py.j2",
            name=f"t{team:03d}-e{index:04d}",
            upstream=upstream,
            tasks=[f"{rng.choice(_WORDS)}_{k}" for k in range(1, spec.tasks_per_env)],
            factor=rng.randrange(2, 9),
        )
        (package / f"env_{index:04d}.py").write_text(source)
    (root / ".gitignore").write_text("__pycache__/\n.flyte-deploy/\n")
    git_commit_all(root, "synthetic monorepo")
    _marker(root).write_text(json.dumps(params))
    return root

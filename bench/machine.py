"""What the numbers were measured on: hardware, software versions and load."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

from bench.context import REPO


def _first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass(frozen=True)
class Machine:
    date: str
    cpu: str
    cores: int
    memory_gib: float
    kernel: str
    python: str
    flyte: str
    tools: dict[str, str]
    commit: str
    load: float

    @classmethod
    def describe(cls) -> Machine:
        kib = _first("/proc/meminfo", "MemTotal").split()[0]
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpu=_first("/proc/cpuinfo", "model name"),
            cores=len(os.sched_getaffinity(0)),
            memory_gib=int(kib) / 2**20 if kib.isdigit() else 0.0,
            kernel=platform.release(),
            python=platform.python_version(),
            flyte=metadata.version("flyte"),
            tools={
                "GNU tar": _version(["tar", "--version"]),
                "gzip": _version(["gzip", "--version"]),
                "pigz": _version(["pigz", "--version"]),
                "git": _version(["git", "--version"]),
                "docker engine": _version(["docker", "version", "--format", "{{.Server.Version}}"]),
            },
            commit=_git_head(),
            load=load_average(),
        )

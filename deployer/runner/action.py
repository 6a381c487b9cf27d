"""One local execution ("action") of a deployed task: its directory and its filled-in container args.

Flyte's backend starts a task's container with the spec's args after substituting template
variables (`{{.input}}`, `{{.outputPrefix}}`, ...) and setting a few environment variables the
runtime (`a0`) reads. This module does the same for a local directory.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployer.errors import RunError

_TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
# The calling shell's variables a task may see. Everything else (AWS_*, GITHUB_TOKEN, a developer's
# FLYTE_* config) stays out: a deployed task's code is not necessarily the caller's own.
_INHERITED = frozenset(
    {
        *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "LANG", "LANGUAGE"),
        *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
        *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    }
)
# Nothing listens here: a task that tries to reach the controller fails fast instead of waiting.
_NO_BACKEND_ENDPOINT = "localhost:9"


@dataclass(frozen=True)
class ActionDir:
    """Where one run keeps its inputs, outputs, raw data and (bundle mode) extracted code."""

    root: Path
    run_name: str
    action_name: str = "a0"

    @classmethod
    def create(cls, parent: Path) -> ActionDir:
        run_name = "r" + secrets.token_hex(8)
        action = cls(root=(parent / run_name).resolve(), run_name=run_name)
        for path in (action.inputs.parent, action.outputs, action.raw_data, action.checkpoint, action.code):
            path.mkdir(parents=True, exist_ok=True)
        return action

    @property
    def inputs(self) -> Path:
        return self.root / "inputs" / "inputs.pb"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def raw_data(self) -> Path:
        return self.root / "raw"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def sub_actions(self) -> Path:
        """Run base for child actions. Never created: the runtime stages a child's inputs here
        before it calls the backend, so a task that calls other tasks fails on this path, which
        is how the runner recognises it."""
        return self.root / "sub-actions-need-a-flyte-backend"

    @property
    def log(self) -> Path:
        return self.root / "task.log"


def fill_args(args: Sequence[str], action: ActionDir) -> list[str]:
    """The spec's container args with every template variable replaced, as Flyte's backend would."""
    values = {
        "input": str(action.inputs),
        "outputprefix": str(action.outputs),
        "rawoutputdataprefix": str(action.raw_data),
        "checkpointoutputprefix": str(action.checkpoint),
        "prevcheckpointprefix": "",
        "runname": action.run_name,
        "actionname": action.action_name,
        "runstarttime": datetime.now(UTC).isoformat(),
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.lower() not in values:
            raise RunError(
                f"the task's container args use the template variable {{{{.{name}}}}}, "
                "which `flyte-deploy run` does not fill"
            )
        return values[name.lower()]

    return [_TEMPLATE.sub(substitute, arg) for arg in args]


def bundle_uri(args: Sequence[str]) -> str | None:
    """The `--tgz` code bundle the task was deployed with (bundle mode), if any."""
    if "--pkl" in args:
        raise RunError("the task was deployed with a pickled code bundle (--pkl); only --tgz bundles run")
    if "--tgz" not in args:
        return None
    index = list(args).index("--tgz")
    if index + 1 >= len(args):
        raise RunError("the task's container args end with --tgz and no bundle URI")
    return args[index + 1]


def with_bundle(args: Sequence[str], local_archive: Path) -> list[str]:
    """Point `--tgz` at an already downloaded archive; the runtime then extracts it as usual."""
    out = list(args)
    out[out.index("--tgz") + 1] = str(local_archive)
    return out


def runtime_env(
    inherited: Mapping[str, str],
    container_env: Mapping[str, str],
    action: ActionDir,
    *,
    project: str,
    domain: str,
    org: str,
    injected: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of the task process: the allowlisted part of `inherited`, the spec's env, what the
    backend injects for `a0`, and `injected` (secrets, from `--secret` only: a caller's variable of the
    same name is not on the allowlist)."""
    env = {k: v for k, v in inherited.items() if _passed_on(k)}
    env.update(container_env)
    env.update(
        {
            "_U_RUN_BASE": str(action.sub_actions),
            "_U_ORG_NAME": org or "local",
            "FLYTE_INTERNAL_EXECUTION_PROJECT": project,
            "FLYTE_INTERNAL_EXECUTION_DOMAIN": domain,
            "_U_EP_OVERRIDE": _NO_BACKEND_ENDPOINT,
            "_U_INSECURE": "true",
            "ACTION_NAME": action.action_name,
            "RUN_NAME": action.run_name,
        }
    )
    env.update(injected or {})
    return env


def _passed_on(name: str) -> bool:
    """Whether a variable of the calling shell reaches a bundle-mode task: what a process needs to run
    (paths, locale, CA bundles, proxies), never the caller's cloud or CI credentials."""
    return name in _INHERITED or name.startswith("LC_")


def task_module(args: Sequence[str]) -> str | None:
    """The module the default task resolver imports (`--resolver ... mod MODULE instance NAME`)."""
    if "--resolver" not in args:
        return None
    rest = list(args)[list(args).index("--resolver") + 2 :]
    pairs = dict(zip(rest[::2], rest[1::2], strict=False))
    return pairs.get("mod")

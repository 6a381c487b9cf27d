"""Secrets a deployed task asks for (`flyte.Secret` in its environment), given with `--secret`, put where
the task finds them on Flyte.

The spec's `security_context.secrets` says how each one is mounted (flyte/_internal/runtime/task_serde.py):
- `ENV_VAR`: the environment variable `env_var` (the SDK derives it from the key when the task names none:
  `GROUP_KEY`, upper case, `-` as `_`);
- `FILE`: a file named by the key in `/etc/flyte/secrets` (also `/etc/flyte/secrets/GROUP/KEY` for a
  grouped one), with `FLYTE_SECRETS_DEFAULT_DIR` naming that directory, as Flyte's secret injector does;
- `ANY`: both.

In container mode the files are written into the container (never to the host's disk); in bundle mode,
where `/etc/flyte/secrets` is the host's, they are in a private directory of the run that
`FLYTE_SECRETS_DEFAULT_DIR` names, removed when the task ends. Values are never printed: `mask` hides
them in what the runner reports.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flyteidl2.core import security_pb2
from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import UsageError

SECRETS_DIR = PurePosixPath("/etc/flyte/secrets")
SECRETS_DIR_ENV = "FLYTE_SECRETS_DEFAULT_DIR"
MASK = "***"
_ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SecretRequest:
    """One secret the task asks for."""

    key: str
    group: str = ""
    env_var: str | None = None
    """Where the task reads it from the environment (None: only as a file)."""
    file: bool = False

    @property
    def name(self) -> str:
        """How `--secret` names it: the key, `GROUP/KEY` for a grouped secret."""
        return f"{self.group}/{self.key}" if self.group else self.key

    @property
    def files(self) -> tuple[PurePosixPath, ...]:
        """Paths under the secrets directory."""
        if not self.file:
            return ()
        grouped = (PurePosixPath(self.group) / self.key,) if self.group else ()
        return (PurePosixPath(self.key), *grouped)

    @property
    def variable_name(self) -> str:
        """The environment variable `--secret NAME` also reads when NAME itself is not set."""
        return self.env_var or _derived_env_var(self.key, self.group)


@dataclass(frozen=True)
class Secrets:
    """The given values of every secret a task asks for."""

    requests: tuple[SecretRequest, ...] = ()
    values: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the values
        return f"Secrets({', '.join(r.name for r in self.requests)})"

    @property
    def env(self) -> dict[str, str]:
        """Environment-variable secrets, by variable name."""
        return {r.env_var: v for r, v in zip(self.requests, self.values, strict=True) if r.env_var}

    @property
    def files(self) -> dict[PurePosixPath, str]:
        """File secrets, by path under the secrets directory."""
        return {path: v for r, v in zip(self.requests, self.values, strict=True) for path in r.files}

    def mask(self, text: str) -> str:
        """`text` with every secret value replaced by `***` (longest first, so no part of one shows)."""
        for value in sorted({v for v in self.values if v}, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    @contextmanager
    def local_dir(self, parent: Path) -> Iterator[Path | None]:
        """Bundle mode: the file secrets in a private directory under `parent`, removed afterwards."""
        files = self.files
        if not files:
            yield None
            return
        root = parent / "secrets"
        root.mkdir(mode=0o700)
        try:
            for relative, value in files.items():
                path = root / relative
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                    out.write(value)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)


def requested_secrets(spec: TaskSpec) -> tuple[SecretRequest, ...]:
    """The secrets the task's environment declares, as its spec carries them."""
    mount = security_pb2.Secret.MountType
    requests = []
    for secret in spec.task_template.security_context.secrets:
        as_file = secret.mount_requirement in (mount.FILE, mount.ANY)
        as_env = secret.mount_requirement in (mount.ENV_VAR, mount.ANY)
        env_var = (secret.env_var or _derived_env_var(secret.key, secret.group)) if as_env else None
        requests.append(SecretRequest(key=secret.key, group=secret.group, env_var=env_var, file=as_file))
    return tuple(requests)


def parse_secret_flags(values: Sequence[str]) -> dict[str, str | None]:
    """`--secret NAME=VALUE`, `NAME=env:VAR` or `NAME` (from the environment), by name; not yet read."""
    given: dict[str, str | None] = {}
    for value in values:
        name, sep, text = value.partition("=")
        name = name.strip()
        if not name:
            raise UsageError("--secret: expected NAME=VALUE, NAME=env:VAR or NAME, e.g. --secret api-token")
        if name in given:
            raise UsageError(f"--secret {name} is given twice")
        given[name] = text if sep else None
    return given


def resolve_secrets(
    spec: TaskSpec, given: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
) -> Secrets:
    """The value of each secret the task asks for, from `--secret`; one `UsageError` naming what is wrong."""
    task = spec.task_template.id.name or spec.short_name
    requests = requested_secrets(spec)
    by_name = {r.name: r for r in requests}
    for request in requests:  # a grouped secret may also be named by its key alone, when that is unique
        if sum(r.key == request.key for r in requests) == 1:
            by_name.setdefault(request.key, request)
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(r.name for r in requests) or "none"
        raise UsageError(f"--secret {unknown[0]}: task {task} asks for no such secret (its secrets: {known})")
    values: dict[str, str] = {}
    for name, text in given.items():
        request = by_name[name]
        if request.name in values:
            raise UsageError(f"--secret {name}: secret {request.name} is given twice")
        values[request.name] = _read(name, text, request, environ)
    missing = [r.name for r in requests if r.name not in values]
    if len(missing) == 1:
        raise UsageError(
            f"task {task} needs secret {missing[0]}: pass --secret {missing[0]}=VALUE, or "
            f"--secret {missing[0]}=env:VAR to read it from an environment variable"
        )
    if missing:
        flags = " ".join(f"--secret {name}=VALUE" for name in missing)
        raise UsageError(
            f"task {task} needs secrets {', '.join(missing)}: pass {flags} (NAME=env:VAR reads one from an "
            "environment variable)"
        )
    return Secrets(requests=requests, values=tuple(values[r.name] for r in requests))


def _read(name: str, text: str | None, request: SecretRequest, environ: Mapping[str, str]) -> str:
    if text is not None and text.startswith(_ENV_PREFIX):
        variable = text.removeprefix(_ENV_PREFIX)
        if not _ENV_NAME.match(variable):
            raise UsageError(f"--secret {name}={text}: {variable!r} is not an environment variable name")
        if variable not in environ:
            raise UsageError(f"--secret {name}={text}: the environment variable {variable} is not set")
        return environ[variable]
    if text is not None:
        return text
    for variable in dict.fromkeys((name, request.variable_name)):
        if variable in environ:
            return environ[variable]
    tried = " or ".join(dict.fromkeys((name, request.variable_name)))
    raise UsageError(
        f"--secret {name}: no environment variable {tried} is set (or pass --secret {name}=VALUE)"
    )


def _derived_env_var(key: str, group: str) -> str:
    """The SDK's default variable name (flyte/_secret.py)."""
    return (f"{group}_{key}" if group else key).replace("-", "_").upper()

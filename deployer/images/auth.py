"""Registry credentials: where they come from, in order.

1. Explicit username/password (token) for the push registry: the `registry_username` /
   `registry_password` settings (the action's inputs; e.g. `github.actor` + `GITHUB_TOKEN` for GHCR).
2. Amazon ECR (`<account>.dkr.ecr.<region>.amazonaws.com`): a token from boto3's
   `ecr.get_authorization_token`, using the ambient AWS credentials.
3. Docker's config: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `auths` entries
   (`auth` or `username`/`password`, `identitytoken`), `credHelpers` and `credsStore` helpers.

Secrets are held as `SecretStr` and never appear in messages or reprs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from deployer.errors import RegistryError

_ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credential:
    username: str
    password: SecretStr = field(repr=False)
    identity_token: bool = False
    """`password` is an OAuth2 refresh token (Docker config `identitytoken`), not a password."""
    source: str = ""
    """Where it came from, for messages: `explicit`, `ecr`, `docker-config`, `credential helper X`."""

    def engine_auth(self) -> dict[str, str]:
        """The `auth_config` docker-py passes to the engine for pulls and pushes."""
        if self.identity_token:
            return {"identitytoken": self.password.get_secret_value()}
        return {"username": self.username, "password": self.password.get_secret_value()}


class Credentials:
    """Resolves a credential per registry host (cached: ECR tokens are fetched once per run)."""

    def __init__(
        self,
        *,
        explicit: dict[str, Credential] | None = None,
        docker_config: Path | None = None,
    ) -> None:
        self._explicit = {k.lower(): v for k, v in (explicit or {}).items()}
        self._docker_config = docker_config
        self._cache: dict[str, Credential | None] = {}

    @classmethod
    def explicit_for(
        cls, push_registry: str | None, username: str | None, password: SecretStr | None
    ) -> Credentials:
        """Explicit credentials apply to the push registry's host; other hosts use the fallbacks."""
        explicit: dict[str, Credential] = {}
        if push_registry and username and password is not None and password.get_secret_value():
            host = push_registry.split("/", 1)[0]
            explicit[host] = Credential(username, password, source="explicit")
        return cls(explicit=explicit)

    @classmethod
    def from_env(cls, push_registry: str | None) -> Credentials:
        """`explicit_for` with the registry credentials of the settings (their variables or inputs)."""
        from deployer.settings import load_settings

        settings = load_settings()
        return cls.explicit_for(push_registry, settings.registry_username, settings.registry_password)

    @property
    def explicit(self) -> dict[str, Credential]:
        """The explicit credentials, by registry host."""
        return dict(self._explicit)

    def for_host(self, host: str) -> Credential | None:
        key = host.lower()
        if key not in self._cache:
            self._cache[key] = self._resolve(key)
        return self._cache[key]

    def _resolve(self, host: str) -> Credential | None:
        if host in self._explicit:
            return self._explicit[host]
        if _ECR_HOST.match(host):
            return ecr_credential(host)
        return docker_config_credential(host, self._docker_config)


def ecr_credential(host: str) -> Credential:
    """A 12-hour ECR token for `host`, from `ecr.get_authorization_token` (ambient AWS credentials)."""
    import boto3
    import botocore.exceptions

    match = _ECR_HOST.match(host)
    if not match:
        raise RegistryError(f"{host} is not an Amazon ECR registry host")
    try:
        client = boto3.client("ecr", region_name=match["region"])
        response = client.get_authorization_token(registryIds=[match["account"]])
        token = response["authorizationData"][0]["authorizationToken"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError, IndexError) as exc:
        raise RegistryError(f"cannot get an ECR token for {host}: {type(exc).__name__}: {exc}") from exc
    username, _, password = base64.b64decode(token).decode().partition(":")
    return Credential(username, SecretStr(password), source="ecr")


def docker_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def docker_config_credential(host: str, config_file: Path | None = None) -> Credential | None:
    path = docker_config_path(config_file)
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read Docker config {path}: {exc}") from exc
    keys = _DOCKER_HUB_KEYS if host in _DOCKER_HUB_KEYS else (host, f"https://{host}", f"http://{host}")
    helper = (config.get("credHelpers") or {}).get(host)
    if helper:
        return _from_helper(helper, keys[0])
    for key in keys:
        entry = (config.get("auths") or {}).get(key)
        if entry:
            credential = _from_auth_entry(entry, path)
            if credential:
                return credential
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], keys[0], missing_ok=True)
    return None


def _from_auth_entry(entry: dict[str, str], path: Path) -> Credential | None:
    if entry.get("identitytoken"):
        return Credential("", SecretStr(entry["identitytoken"]), identity_token=True, source=str(path))
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError as exc:
            raise RegistryError(f"Docker config {path}: an `auth` entry is not base64 user:password") from exc
        return Credential(username, SecretStr(password), source=str(path))
    if entry.get("username") and entry.get("password"):
        return Credential(entry["username"], SecretStr(entry["password"]), source=str(path))
    return None


def _from_helper(helper: str, server: str, *, missing_ok: bool = False) -> Credential | None:
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise RegistryError(
            f"Docker config names credential helper {program}, which is not installed"
        ) from exc
    if result.returncode != 0:
        if missing_ok or "credentials not found" in result.stdout.lower():
            return None
        raise RegistryError(
            f"{program} get {server} failed: {result.stdout.strip() or result.stderr.strip()}"
        )
    data = json.loads(result.stdout)
    if data.get("Username") == "<token>":
        return Credential("", SecretStr(data["Secret"]), identity_token=True, source=program)
    return Credential(data.get("Username", ""), SecretStr(data.get("Secret", "")), source=program)

"""Every option of flyte-deploy, in one model: its default, its `FLYTE_DEPLOY_*` variable, its flag,
its Action input and its one-line doc.

The CLI declares its shared flags from these fields (`deployer.commands.options`), the GitHub Action maps
its `INPUT_*` variables onto them (`entrypoint.inputs`), and the README's configuration table is generated
from them (`flyte-deploy config --markdown`; a test keeps the two equal). Precedence, highest first: a flag or
Action input, the `FLYTE_DEPLOY_*` variable, the default. This is the only module that reads them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from deployer.errors import UsageError
from deployer.models import CopyStyle, Mode, TriggerPolicy

ENV_PREFIX = "FLYTE_DEPLOY_"
STATE_DIR_NAME = ".flyte-deploy"


def option(
    default: Any,
    doc: str,
    *flags: str,
    group: str | None = None,
    action_input: str | None = None,
    env: tuple[str, ...] = (),
    shown_default: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field. `flags`: the CLI spellings (none: variable only); `group`: which commands take the
    flags; `action_input`: the action.yml input it is read from; `env`: variables read besides
    `FLYTE_DEPLOY_<NAME>`, in order of precedence after it."""
    extra: JsonDict = {
        "flags": list(flags),
        "group": group,
        "input": action_input,
        "shown_default": shown_default,
    }
    alias = None
    if env:
        alias = AliasChoices(*env)
    return Field(default, description=doc, validation_alias=alias, json_schema_extra=extra, **constraints)


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("flyte_deploy_environ", default=None)


class _Environ(EnvSettingsSource):
    """The variables of the mapping `load_settings(environ=...)` was given (the Action passes its own),
    else of this process."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


Words = Annotated[tuple[str, ...], NoDecode]
"""A list read from one variable: items separated by whitespace, commas or newlines."""


class Settings(BaseSettings):
    """Everything a run can be configured with. Frozen: stages read it, nobody changes it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        validate_default=False,
        env_ignore_empty=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags and inputs, then variables, then the flyte SDK's own config file; no .env or secrets
        # files behind the user's back.
        return init_settings, _Environ(settings_cls), _FlyteConfig(settings_cls)

    # -- where the code is ------------------------------------------------------------------------------
    root_dir: Path | None = option(
        None,
        "Import root and bundle root (Flyte's --root-dir).",
        "--root-dir",
        group="root",
        action_input="root-dir",
        shown_default="current directory (Action: the workspace)",
    )
    copy_style: CopyStyle = option(
        CopyStyle.loaded_modules,
        "Code files to ship: loaded_modules (alias auto), all, or none.",
        "--copy-style",
        group="code",
        action_input="copy-style",
    )
    sha: str | None = option(None, "Commit to read instead of HEAD.", "--sha", group="version")
    version: str | None = option(
        None,
        "Explicit version. Default: the semver tag, else derived from git.",
        "--version",
        group="version",
        action_input="version",
        shown_default="from git",
    )

    # -- where it goes ----------------------------------------------------------------------------------
    project: str = option(
        "flytesnacks", "Flyte project.", "--project", "-p", group="target", action_input="project"
    )
    domain: str = option("development", "Flyte domain.", "--domain", "-d", group="target")
    org: str = option(
        "",
        "Flyte organization.",
        "--org",
        group="target",
        action_input="org",
        shown_default="from the API key or Flyte config, else derived from the endpoint as the SDK does",
    )
    trigger_policy: TriggerPolicy = option(
        TriggerPolicy.as_code,
        "Triggers: as-code (active as each trigger's auto_activate says) or inactive (registered, never "
        "fired). The Action applies it to default-branch pushes; previews are always inactive, releases "
        "as-code.",
        "--triggers",
        group="target",
        action_input="triggers",
    )
    app_suffix: str = option(
        "",
        "Appended to every app's name (the Action's previews: -pr-N), so a preview never replaces an app.",
        "--app-suffix",
        group="target",
        shown_default="none",
        pattern=r"^[a-z0-9-]*$",
    )

    # -- images -----------------------------------------------------------------------------------------
    mode: Mode = option(
        Mode.auto,
        "container (code baked into the image), bundle (code tarball in blob storage), or auto "
        "(container when a Docker engine answers, else bundle).",
        "--mode",
        group="build",
        action_input="mode",
    )
    registry: str | None = option(
        None, "Registry to push built images to.", "--registry", group="build", action_input="registry"
    )
    images: Words = option(
        (),
        "NAME=URI fills Image.from_ref_name(NAME); a bare URI is the default image. Repeatable.",
        "--image",
        group="build",
        action_input="images",
        shown_default="none",
    )
    base_image_mirrors: Words = option(
        (),
        "FROM=TO rewrite of base image references (air-gapped registries). Repeatable.",
        "--base-image-mirror",
        group="build",
        action_input="base-image-mirror",
        env=("FLYTE_DEPLOY_BASE_IMAGE_MIRROR", "FLYTE_DEPLOY_BASE_IMAGE_MIRRORS"),
        shown_default="none",
    )
    push: bool = option(True, "Push built images (--no-push: build only).", "--push/--no-push", group="push")
    dry_run: bool = option(
        False, "Build, push, upload and register nothing.", "--dry-run", group="push", action_input="dry-run"
    )
    registry_username: str | None = option(
        None, "Registry user for pushes and registry API calls.", action_input="registry-username"
    )
    registry_password: SecretStr | None = option(
        None, "Registry password or token (with registry_username).", action_input="registry-password"
    )
    insecure_registries: Words = option(
        (), "Registry hosts spoken to over plain HTTP (loopback always is).", shown_default="none"
    )
    build_concurrency: int = option(2, "Image builds run at once.", ge=1)
    image_builder: Literal["auto", "buildkit", "engine"] = option(
        "auto",
        "How dependency images are built: buildkit (a Docker CLI with BuildKit: cache and secret mounts), "
        "engine (the engine API's classic builder), or auto (buildkit when a Docker CLI offers it).",
    )
    docker_cli: str | None = option(
        None,
        "Docker CLI that drives BuildKit builds.",
        shown_default="docker on PATH, else /usr/bin/docker",
    )
    allow_outside_sources: bool = option(
        False,
        "Let image layers copy files from outside root_dir (e.g. with_source_file('/etc/x')).",
    )

    # -- the control plane ------------------------------------------------------------------------------
    endpoint: str | None = option(
        None,
        "Flyte control plane URL.",
        "--endpoint",
        group="control_plane",
        action_input="endpoint",
        shown_default="the embedded control plane",
    )
    insecure: bool = option(
        False,
        "Plain HTTP to the control plane.",
        "--insecure",
        group="control_plane",
        action_input="insecure",
    )
    api_key: SecretStr | None = option(
        None,
        "Flyte API key (base64 of endpoint:client_id:client_secret:org, as `flyte` takes in FLYTE_API_KEY), "
        "or a plain bearer token for `flyte-deploy serve --api-key`.",
        "--api-key",
        group="control_plane",
        action_input="api-key",
        env=("FLYTE_DEPLOY_API_KEY", "FLYTE_API_KEY"),
        shown_default="none",
    )
    client_id: str | None = option(
        None,
        "OAuth2 client id for the client-credentials flow (with client_secret).",
        "--client-id",
        group="control_plane",
        shown_default="from the API key or the Flyte config",
    )
    client_secret: SecretStr | None = option(
        None,
        "OAuth2 client secret for the client-credentials flow.",
        shown_default="from the API key or the Flyte config",
    )
    flyte_config: Path | None = option(
        None,
        "Flyte config file (endpoint, insecure, project, domain, org, auth), below flags and FLYTE_DEPLOY_*.",
        "--config",
        group="control_plane",
        env=("FLYTE_DEPLOY_FLYTE_CONFIG", "FLYTE_CONFIG"),
        shown_default="found as `flyte` finds it (./.flyte/config.yaml, ~/.flyte/config.yaml, ...)",
    )
    create_project: bool = option(
        False,
        "Create the project on the control plane when it does not exist (otherwise the deploy stops).",
        "--create-project",
        group="control_plane",
    )

    app_url: str | None = option(
        None,
        "Embedded control plane and serve: the public URL reported for each app ({name}, {project}, "
        "{domain} replaced), as a backend with an ingress domain does.",
        shown_default="none",
    )

    # -- storage and state ------------------------------------------------------------------------------
    storage: str | None = option(
        None,
        "Bundle storage: file://DIR or s3://bucket/prefix. Default: uploaded through the control plane's "
        "data proxy, as `flyte deploy` does (no bucket credentials needed).",
        "--storage",
        group="storage",
        action_input="storage",
        shown_default="the control plane's data proxy",
    )
    state_dir: Path | None = option(
        None,
        "Embedded control plane and local storage state.",
        "--state-dir",
        group="storage",
        action_input="state-dir",
        shown_default="ROOT_DIR/.flyte-deploy",
    )
    s3_endpoint_url: str | None = option(
        None,
        "S3-compatible endpoint for s3:// storage.",
        env=("FLYTE_DEPLOY_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        shown_default="AWS",
    )
    s3_addressing_style: Literal["path", "virtual", "auto"] | None = option(
        None, "S3 addressing: path, virtual or auto.", shown_default="path with an endpoint, else auto"
    )
    s3_max_attempts: int = option(5, "Attempts per S3 request (exponential backoff between them).", ge=1)
    import_timeout: float = option(
        300.0, "Seconds importing one user module may take before the run is stopped.", gt=0
    )
    progress: bool | None = option(
        None, "Progress bars even when stderr is not a terminal.", shown_default="on a terminal only"
    )

    # -- GitHub and serve -------------------------------------------------------------------------------
    github_throttle: bool = option(True, "PyGithub's client-side pacing of requests (0: off).")
    github_backoff: float = option(1.0, "First wait, in seconds, before a GitHub request is retried.", ge=0)
    serve_api_key: SecretStr | None = option(
        None, "`flyte-deploy serve`: require `authorization: Bearer KEY`.", shown_default="none"
    )
    serve_client_id: str | None = option(
        None,
        "`flyte-deploy serve`: issue tokens to this OAuth2 client (client credentials).",
        shown_default="none",
    )
    serve_client_secret: SecretStr | None = option(
        None, "`flyte-deploy serve`: the secret of serve_client_id.", shown_default="none"
    )
    serve_auth_issuer: str | None = option(
        None, "`flyte-deploy serve`: accept tokens signed by this OAuth2/OIDC issuer.", shown_default="none"
    )
    serve_auth_audience: str | None = option(
        None, "`flyte-deploy serve`: the audience tokens must name.", shown_default="any"
    )
    serve_tls_cert: Path | None = option(
        None,
        "`flyte-deploy serve`: TLS certificate chain (PEM); with serve_tls_key, serve HTTPS.",
        shown_default="none",
    )
    serve_tls_key: Path | None = option(
        None, "`flyte-deploy serve`: TLS private key (PEM).", shown_default="none"
    )
    serve_storage: str | None = option(
        None,
        "`flyte-deploy serve`: where the data proxy keeps uploads: file://DIR or s3://bucket/prefix.",
        shown_default="file://STATE_DIR/bundles",
    )
    serve_projects: Words = option(
        ("flytesnacks",),
        "`flyte-deploy serve`: projects created at start (if missing).",
        shown_default="flytesnacks",
    )
    serve_public_url: str | None = option(
        None,
        "`flyte-deploy serve`: the URL clients reach it at (signed upload URLs, token issuer).",
        shown_default="from each request's Host header",
    )
    serve_max_request_bytes: int = option(
        8 << 20, "`flyte-deploy serve`: largest RPC request, before and after decompression.", ge=1024
    )
    serve_max_upload_bytes: int = option(
        2 << 30, "`flyte-deploy serve`: largest upload to file storage.", ge=1
    )

    @field_validator("images", "base_image_mirrors", "insecure_registries", "serve_projects", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part for part in re.split(r"[\s,]+", value) if part)
        return value

    # -- derived values -----------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """`root_dir`, absolute (the current directory when unset)."""
        return (self.root_dir or Path.cwd()).resolve()

    @property
    def state(self) -> Path:
        """`state_dir`, else `ROOT_DIR/.flyte-deploy`; absolute."""
        return Path(self.state_dir or self.root / STATE_DIR_NAME).resolve()


class _FlyteConfig(PydanticBaseSettingsSource):
    """The lowest-precedence source: the flyte SDK's own config file and a Flyte API key (see
    `deployer.controlplane.flyteconfig`), for the control-plane fields nothing above set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from deployer.controlplane.flyteconfig import config_defaults

        aliases = {
            name: tuple(str(a) for a in info.validation_alias.choices)
            for name, info in Settings.model_fields.items()
            if isinstance(info.validation_alias, AliasChoices)
        }
        return config_defaults(self.current_state, aliases)


# ------------------------------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class OptionInfo:
    """What the CLI, the Action and the docs need to know about one field."""

    name: str
    doc: str
    flags: tuple[str, ...]
    group: str | None
    action_input: str | None
    env: tuple[str, ...]
    default: str

    @property
    def flag(self) -> str | None:
        return self.flags[0].split("/")[0] if self.flags else None


def options() -> Iterator[OptionInfo]:
    for name, info in Settings.model_fields.items():
        yield _option_info(name, info)


def option_info(name: str) -> OptionInfo:
    return _option_info(name, Settings.model_fields[name])


def _option_info(name: str, info: FieldInfo) -> OptionInfo:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    alias = info.validation_alias
    env = (
        tuple(str(a) for a in alias.choices)
        if isinstance(alias, AliasChoices)
        else (ENV_PREFIX + name.upper(),)
    )
    shown = extra.get("shown_default")
    return OptionInfo(
        name=name,
        doc=info.description or "",
        flags=tuple(str(f) for f in extra.get("flags") or ()),  # type: ignore[union-attr]
        group=str(extra["group"]) if extra.get("group") else None,
        action_input=str(extra["input"]) if extra.get("input") else None,
        env=env,
        default=str(shown) if shown else _show_default(info.default),
    )


def _show_default(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(getattr(value, "value", value))


# ------------------------------------------------------------------------------------------------- loading


def load_settings(
    given: Mapping[str, Any] | None = None,
    *,
    source: str = "flag",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from `given` (flags, or Action inputs with `source="input"`, by field name), then the
    `FLYTE_DEPLOY_*` variables of `environ` (default: this process's), then the defaults.

    A bad value is one `UsageError` naming where it came from: the flag or input, else the variable."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    token = _ENVIRON.set(environ)
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise _usage_error(exc, given, source, os.environ if environ is None else environ) from None
    finally:
        _ENVIRON.reset(token)


@contextlib.contextmanager
def environment(environ: Mapping[str, str]) -> Iterator[None]:
    """Every `load_settings()` inside reads `environ` instead of this process's variables."""
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _usage_error(
    exc: ValidationError, given: Mapping[str, Any], source: str, environ: Mapping[str, str]
) -> UsageError:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if field not in Settings.model_fields:
        return UsageError(f"settings: {message}")
    info = option_info(field)
    choices = _choices(Settings.model_fields[field].annotation)
    if choices and error.get("type") in ("enum", "literal_error"):
        message = f"use one of: {', '.join(choices)}"
    if field in given:
        value = given[field]
        shown = "***" if isinstance(value, SecretStr) else value
        if source == "input":
            return UsageError(f"input `{info.action_input or field}`: {shown!r} is not valid ({message})")
        return UsageError(f"{info.flag or field} {shown!r}: {message}")
    name = next((e for e in info.env if e in environ), info.env[0])
    return UsageError(f"{name}={environ.get(name, '')!r}: {message}")


def _choices(annotation: Any) -> list[str]:
    import enum
    import typing

    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [str(member.value) for member in arg]
        if typing.get_origin(arg) is Literal:
            return [str(value) for value in typing.get_args(arg)]
    return []


# ------------------------------------------------------------------------------------------------- docs


TABLE_START = "<!-- settings table: generated by `flyte-deploy config --markdown`; do not edit -->"
TABLE_END = "<!-- end of settings table -->"


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| flag | Action input | environment variable | default | meaning |", "|---|---|---|---|---|"]
    for info in options():
        flags = " / ".join(f"`{f}`" for f in info.flags) or "-"
        action_input = f"`{info.action_input}`" if info.action_input else "-"
        env = " / ".join(f"`{e}`" for e in info.env)
        doc = info.doc.replace("|", r"\|")
        rows.append(f"| {flags} | {action_input} | {env} | {info.default} | {doc} |")
    return "\n".join([TABLE_START, *rows, TABLE_END])

"""The flyte SDK's own configuration, read exactly as `flyte` reads it, beneath our settings.

`flyte.config.auto()` finds the config the way the `flyte` CLI does (`./config.yaml`,
`./.flyte/config.yaml`, `<git root>/.flyte/config.yaml`, `UCTL_CONFIG`/`FLYTECTL_CONFIG`,
`~/.union/config.yaml`, `~/.flyte/config.yaml`; `--config`/`FLYTE_CONFIG` name one), and applies the
SDK's `FLYTE_*` variable overrides. What it gives:
- `endpoint`, `insecure`, `project`, `domain`, `org` when our flag / `FLYTE_DEPLOY_*` variable leaves
  them unset (`config_defaults`, a settings source of the lowest precedence);
- everything about reaching and authenticating to the endpoint (`remote_target`): CA file, skipping
  TLS verification, the auth flow, client id and secret, external commands, scopes, proxy.

A Flyte API key (base64 `endpoint:client_id:client_secret:org`) works as under `flyte` with
`FLYTE_API_KEY`: its endpoint is used unless one is given, its client credentials authenticate, its org
applies unless `--org` names one. The org then falls back to the config's, then to what the SDK derives
from the endpoint's host name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer import sdk
from deployer.controlplane.session import RemoteTarget
from deployer.errors import UsageError

if TYPE_CHECKING:
    from flyte.config import Config

    from deployer.settings import Settings


def load_flyte_config(path: Path | str | None) -> Config:
    import flyte.config

    if path is not None and not Path(path).is_file():
        raise UsageError(f"--config {str(path)!r}: no such Flyte config file")
    try:
        return flyte.config.auto(str(path) if path is not None else None)
    except Exception as exc:
        where = str(path) if path is not None else "the Flyte config"
        raise UsageError(f"{where}: cannot be read ({' '.join(str(exc).split())})") from exc


def config_defaults(state: Mapping[str, Any], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Values for the fields `state` (flags, inputs, `FLYTE_DEPLOY_*` variables so far) leaves unset."""

    def given(name: str) -> Any:
        for key in (name, *aliases.get(name, ())):
            value = state.get(key)
            if value not in (None, ""):
                return value
        return None

    config = load_flyte_config(given("flyte_config"))
    found: dict[str, Any] = {}
    key = _decoded_key(given("api_key"))
    endpoint = given("endpoint")
    if endpoint is None:
        endpoint = (sdk.sanitize_endpoint(key[0]) if key and key[0] else None) or config.platform.endpoint
        if endpoint:
            found["endpoint"] = endpoint
    if given("insecure") is None and config.source is not None and config.platform.insecure:
        found["insecure"] = True
    for name, value in (("project", config.task.project), ("domain", config.task.domain)):
        if given(name) is None and value:
            found[name] = value
    if given("org") is None and endpoint:
        org = (key[3] if key else None) or config.task.org or sdk.org_from_endpoint(str(endpoint))
        if org:
            found["org"] = org
    return found


def remote_target(settings: Settings) -> RemoteTarget:
    """How to reach `settings.endpoint` and authenticate, as `flyte` would with the same config."""
    from deployer.controlplane.remote import normalize_endpoint

    if not settings.endpoint:
        raise UsageError("no control plane endpoint (--endpoint, an API key or the Flyte config)")
    platform = load_flyte_config(settings.flyte_config).platform
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    key = _decoded_key(api_key)
    static_token = api_key if api_key and key is None else None
    client_id = settings.client_id or (key[1] if key else None) or platform.client_id
    secret_setting = settings.client_secret.get_secret_value() if settings.client_secret else None
    client_secret = secret_setting or (key[2] if key else None) or platform.client_credentials_secret
    auth_type: str | None = platform.auth_mode if platform.auth_mode != "Pkce" else None
    explicit = bool(settings.client_id and secret_setting) or key is not None
    if explicit or (auth_type is None and client_id and client_secret):
        auth_type = "ClientSecret"
    if auth_type is None:
        # No flow configured: the SDK's default (PKCE) would wait for a browser login in the middle of CI.
        # With none, an open endpoint just works and a protected one answers UNAUTHENTICATED, which the
        # error turns into what to configure.
        auth_type = "Passthrough"
    url = normalize_endpoint(settings.endpoint, insecure=settings.insecure)
    return RemoteTarget(
        endpoint=url,
        # An http:// URL is plain HTTP whatever --insecure says (the SDK would try to authenticate over it).
        insecure=settings.insecure or url.startswith("http://"),
        insecure_skip_verify=platform.insecure_skip_verify,
        ca_cert_file_path=platform.ca_cert_file_path,
        auth_type=auth_type,
        client_id=client_id,
        client_secret=client_secret,
        command=tuple(platform.command or ()),
        proxy_command=tuple(platform.proxy_command or ()),
        scopes=tuple(platform.scopes or ()),
        http_proxy_url=platform.http_proxy_url,
        disable_keyring=platform.disable_keyring,
        static_token=static_token,
    )


def _decoded_key(api_key: Any) -> tuple[str, str, str, str | None] | None:
    if api_key is None:
        return None
    raw = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else str(api_key)
    return sdk.decode_api_key(raw) if raw else None

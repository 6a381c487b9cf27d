"""Who may call `flyte-deploy serve`: bearer tokens checked before a request body is read.

Three kinds of credential, any of which may be configured (none: the server is open):
- static API keys (`--api-key`): `authorization: Bearer KEY`, compared in constant time;
- client credentials (`--client-id`/`--client-secret`): the server is its own OAuth2 authorization
  server. It publishes RFC 8414 metadata (also through `AuthMetadataService`, which is where the flyte
  SDK discovers it), answers the client-credentials grant at `TOKEN_PATH` with an RS256 JWT signed by a
  key made at start, and publishes that key at `JWKS_PATH`. A Flyte API key
  (base64 `endpoint:client_id:client_secret:org`) is these credentials, so `flyte` with an API key,
  or with `admin.clientId`/`clientSecretEnvVar` in its config, authenticates as it does with Flyte;
- an external issuer (`--auth-issuer URL`): tokens it signed are accepted (signature through its JWKS,
  `iss`, `exp`, and `aud` when `--auth-audience` is set); the metadata the SDK discovers is the issuer's,
  so clients fetch tokens from it directly (as Flyte's backend does: auth_metadata_service.go).

Tokens are verified on every request; nothing is stored. Signing keys live in memory: tokens issued
before a restart are refused, and the SDK fetches a new one (it retries an UNAUTHENTICATED call once).
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN_PATH = "/oauth2/token"
JWKS_PATH = "/oauth2/jwks"
METADATA_PATH = "/.well-known/oauth-authorization-server"
SCOPES = ("all",)
_ISSUER_CACHE_S = 300.0
_REFETCH_AFTER_S = 30.0


class AuthRefused(Exception):
    """The request's credential is missing or not valid; the message says which."""


class TokenRefused(Exception):
    """The token endpoint refuses a grant: an RFC 6749 error code and a description."""

    def __init__(self, status: str, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AuthConfig:
    api_keys: tuple[str, ...] = ()
    clients: Mapping[str, str] = field(default_factory=dict)
    """Client id → secret for the client-credentials grant this server answers."""
    issuer: str | None = None
    """An external OAuth2 issuer whose tokens are accepted."""
    audience: str | None = None
    token_lifetime_s: int = 3600

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.clients or self.issuer)

    def describe(self) -> str:
        kinds = []
        if self.api_keys:
            kinds.append("API key")
        if self.clients:
            kinds.append(f"client credentials ({', '.join(sorted(self.clients))})")
        if self.issuer:
            kinds.append(f"tokens of {self.issuer}")
        return ", ".join(kinds) or "none"


@dataclass(frozen=True)
class Identity:
    subject: str
    credential: str
    """"api-key", "token" (issued here) or "issuer"."""


class Auth:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._signer = _Signer() if config.clients else None
        self._issuer = _RemoteIssuer(config.issuer) if config.issuer else None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- checking requests ------------------------------------------------------------------------------

    def authenticate(self, authorization: str) -> Identity:
        scheme, _, credential = authorization.partition(" ")
        if not authorization:
            raise AuthRefused("missing bearer token (this control plane requires authentication)")
        if scheme.lower() != "bearer" or not credential:
            raise AuthRefused("the authorization header is not a bearer token")
        credential = credential.strip()
        for key in self.config.api_keys:
            if hmac.compare_digest(credential.encode(), key.encode()):
                return Identity(subject="api-key", credential="api-key")
        if credential.count(".") != 2:
            raise AuthRefused("wrong bearer token")
        failures: list[str] = []
        if self._signer is not None:
            try:
                claims = self._signer.verify(credential, audience=self.config.audience)
                return Identity(subject=str(claims.get("sub", "")), credential="token")
            except AuthRefused as exc:
                failures.append(str(exc))
        if self._issuer is not None:
            try:
                claims = self._issuer.verify(credential, audience=self.config.audience)
                return Identity(subject=str(claims.get("sub", "")), credential="issuer")
            except AuthRefused as exc:
                failures.append(str(exc))
        raise AuthRefused(failures[-1] if failures else "wrong bearer token")

    # -- the authorization server -----------------------------------------------------------------------

    def issue_token(self, form: Mapping[str, str], authorization: str, issuer_url: str) -> dict[str, Any]:
        """The client-credentials grant: a token response, or `TokenRefused`."""
        if self._signer is None:
            raise TokenRefused("404 Not Found", "unsupported_grant_type", "this server issues no tokens")
        if form.get("grant_type") != "client_credentials":
            raise TokenRefused(
                "400 Bad Request", "unsupported_grant_type", "only the client_credentials grant is supported"
            )
        client_id, secret = _client_credentials(form, authorization)
        expected = self.config.clients.get(client_id)
        if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise TokenRefused("401 Unauthorized", "invalid_client", "unknown client id or wrong secret")
        lifetime = self.config.token_lifetime_s
        token = self._signer.sign(
            subject=client_id, issuer=issuer_url, audience=self.config.audience, lifetime_s=lifetime
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(SCOPES),
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._signer.jwk()]} if self._signer is not None else {"keys": []}

    def oauth2_metadata(self, base_url: str) -> dict[str, Any] | None:
        """RFC 8414 metadata clients discover; None when this server neither issues nor trusts tokens."""
        if self._issuer is not None:
            return self._issuer.metadata()
        if self._signer is None:
            return None
        return {
            "issuer": base_url,
            "token_endpoint": base_url + TOKEN_PATH,
            "jwks_uri": base_url + JWKS_PATH,
            # The SDK's client config needs one; no interactive flow is served, so it answers 404.
            "authorization_endpoint": base_url + "/oauth2/authorize",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(SCOPES),
        }

    def public_client_config(self) -> dict[str, Any]:
        return {
            "client_id": next(iter(sorted(self.config.clients)), ""),
            "redirect_uri": "http://localhost:53593/callback",
            "scopes": list(SCOPES) if self._signer is not None else [],
            "authorization_metadata_key": "authorization",
            "audience": self.config.audience or "",
        }


def _client_credentials(form: Mapping[str, str], authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError as exc:
            raise TokenRefused("401 Unauthorized", "invalid_client", "malformed basic credentials") from exc
        client_id, _, secret = decoded.partition(":")
        # RFC 6749 2.3.1: both parts are form-urlencoded (the flyte SDK quotes the secret).
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


class _Signer:
    """This server's RS256 token key, made at start."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = self._key.public_key()
        numbers = self._public.public_numbers()
        self.kid = (
            base64.urlsafe_b64encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")[:12])
            .decode()
            .rstrip("=")
        )

    def sign(self, *, subject: str, issuer: str, audience: str | None, lifetime_s: int) -> str:
        import jwt

        now = int(time.time())
        claims: dict[str, Any] = {"iss": issuer, "sub": subject, "iat": now, "exp": now + lifetime_s}
        claims["scope"] = " ".join(SCOPES)
        if audience:
            claims["aud"] = audience
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str, *, audience: str | None) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthRefused(f"malformed bearer token ({exc})") from exc
        if header.get("kid") != self.kid:
            raise AuthRefused("bearer token not issued by this server (or before it restarted)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                audience=audience,
                options={"verify_aud": bool(audience), "require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthRefused("bearer token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthRefused(f"bearer token refused ({exc})") from exc
        return claims

    def jwk(self) -> dict[str, Any]:
        numbers = self._public.public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode().rstrip("=")

        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64(numbers.n),
            "e": b64(numbers.e),
        }


class _RemoteIssuer:
    """An external issuer's metadata and keys, fetched on demand and cached."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None or time.monotonic() - self._fetched_at > _ISSUER_CACHE_S:
                self._refresh()
            assert self._metadata is not None
            return dict(self._metadata)

    def verify(self, token: str, *, audience: str | None) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthRefused(f"malformed bearer token ({exc})") from exc
        key = self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name] if key.algorithm_name else ["RS256", "ES256"],
                audience=audience,
                issuer=self.issuer,
                options={"verify_aud": bool(audience), "require": ["exp", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthRefused("bearer token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthRefused(f"bearer token refused by issuer {self.issuer} rules ({exc})") from exc
        return claims

    def _key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched_at
            if kid not in self._keys and (self._metadata is None or stale > _REFETCH_AFTER_S):
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise AuthRefused(f"bearer token signed by a key issuer {self.issuer} does not publish")
        return key

    def _refresh(self) -> None:
        import httpx
        import jwt

        try:
            with httpx.Client(timeout=10.0) as http:
                metadata = _first_json(
                    http,
                    [f"{self.issuer}{METADATA_PATH}", f"{self.issuer}/.well-known/openid-configuration"],
                )
                jwks_uri = str(metadata.get("jwks_uri", ""))
                if not jwks_uri:
                    raise AuthRefused(f"issuer {self.issuer} publishes no jwks_uri")
                keys = http.get(jwks_uri).raise_for_status().json()
            key_set = jwt.PyJWKSet.from_dict(keys)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise AuthRefused(f"cannot read the keys of issuer {self.issuer}: {exc}") from exc
        self._metadata = metadata
        self._keys = {k.key_id or "": k for k in key_set.keys}
        self._fetched_at = time.monotonic()


def _first_json(http: Any, urls: list[str]) -> dict[str, Any]:
    last: Exception | None = None
    for url in urls:
        try:
            response = http.get(url)
            if response.status_code == 200:
                document = response.json()
                if isinstance(document, dict):
                    return document
        except ValueError as exc:
            last = exc
    raise AuthRefused(f"no OAuth2 metadata at {urls[0]} ({last or 'not found'})")

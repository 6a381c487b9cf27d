"""flyteidl2 `AuthMetadataService` and `IdentityService`: what the flyte SDK asks before authenticating,
and `flyte whoami`.

`GetOAuth2Metadata` answers the metadata of whoever issues tokens (this server, or the external issuer it
trusts), UNIMPLEMENTED when there is none (as Flyte's backend without an auth server);
`GetPublicClientConfig` the client settings (scopes, the header tokens go in). `UserInfo` names the
authenticated caller, which the server passes in a header it sets itself (`SUBJECT_HEADER`, never taken
from the client).
"""

from __future__ import annotations

import re
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.auth import auth_service_pb2 as am
from flyteidl2.auth import identity_pb2
from flyteidl2.auth.auth_service_connect import AuthMetadataServiceSync
from flyteidl2.auth.identity_connect import IdentityServiceSync
from google.protobuf.json_format import ParseDict

from deployer.controlplane.auth import Auth, AuthRefused

SUBJECT_HEADER = "x-flyte-deploy-subject"
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
SCHEME_HEADER = "x-flyte-deploy-scheme"


class AuthMetadataService(AuthMetadataServiceSync):  # type: ignore[misc]
    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def get_o_auth2_metadata(
        self, request: am.GetOAuth2MetadataRequest, ctx: RequestContext[Any, Any]
    ) -> am.GetOAuth2MetadataResponse:
        try:
            document = self.auth.oauth2_metadata(base_url(ctx))
        except AuthRefused as exc:
            raise ConnectError(Code.UNAVAILABLE, str(exc)) from exc
        if document is None:
            raise ConnectError(
                Code.UNIMPLEMENTED, "oauth2 metadata is not configured: this control plane is open"
            )
        response = am.GetOAuth2MetadataResponse()
        ParseDict(document, response, ignore_unknown_fields=True)
        return response

    def get_public_client_config(
        self, request: am.GetPublicClientConfigRequest, ctx: RequestContext[Any, Any]
    ) -> am.GetPublicClientConfigResponse:
        return am.GetPublicClientConfigResponse(**self.auth.public_client_config())


class IdentityService(IdentityServiceSync):  # type: ignore[misc]
    def user_info(
        self, request: identity_pb2.UserInfoRequest, ctx: RequestContext[Any, Any]
    ) -> identity_pb2.UserInfoResponse:
        subject = ctx.request_headers().get(SUBJECT_HEADER, "")
        if not subject:
            raise ConnectError(Code.UNAUTHENTICATED, "no authenticated identity on request")
        return identity_pb2.UserInfoResponse(subject=subject, name=subject, preferred_username=subject)


def caller_base_url(ctx: RequestContext[Any, Any]) -> str | None:
    """`scheme://host[:port]` the caller used to reach this server, as Flyte's ClusterService derives it
    from the Host header; the scheme from the header the server sets. None when either is unusable."""
    headers = ctx.request_headers()
    host = headers.get("host", "")
    scheme = headers.get(SCHEME_HEADER, "")
    if not _HOST.fullmatch(host) or scheme not in ("http", "https"):
        return None
    return f"{scheme}://{host}"


def base_url(ctx: RequestContext[Any, Any]) -> str:
    return caller_base_url(ctx) or "http://127.0.0.1"

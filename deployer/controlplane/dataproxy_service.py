"""flyteidl2 `DataProxyService.CreateUploadLocation` of the embedded control plane.

What the flyte SDK (`flyte.remote._data._upload_single_file`) and our client rely on, as on Flyte's
backend (dataproxy/service/dataproxy_service.go):
- the request names a project the plane has (NOT_FOUND otherwise), `filename_root` or `content_md5`
  (INVALID_ARGUMENT otherwise), an `expires_in` of at most `MAX_EXPIRES_IN_S` (default: that) and, when
  given, a `content_length` within the plane's upload limit;
- the object goes to `PROJECT/DOMAIN/(filename_root | base32(content_md5))/filename` (see `blobs.py`):
  one content, one key, so uploads deduplicate by content;
- with both `filename` and `filename_root`, an existing object with another MD5 (or none given) is
  ALREADY_EXISTS: nothing is overwritten by different bytes;
- the response carries the signed URL, the native URL to put into the task spec, the expiry and the
  headers the PUT must send.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.dataproxy import dataproxy_service_pb2 as dp
from flyteidl2.dataproxy.dataproxy_service_connect import DataProxyServiceSync
from google.protobuf.timestamp_pb2 import Timestamp

from deployer.controlplane.auth_service import caller_base_url
from deployer.controlplane.blobs import Blobs
from deployer.controlplane.store import TaskStore
from deployer.controlplane.validation import validate
from deployer.errors import StorageError

MAX_EXPIRES_IN_S = 3600.0
DEFAULT_MAX_UPLOAD_BYTES = 2 << 30
_COMPONENT = re.compile(r"[A-Za-z0-9._=-]{1,255}")


class DataProxyService(DataProxyServiceSync):  # type: ignore[misc]
    def __init__(
        self,
        store: TaskStore,
        blobs: Blobs,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        base_url: str | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.max_upload_bytes = max_upload_bytes
        self.base_url = base_url
        """Where clients PUT to file storage (`flyte-deploy serve`'s public URL); None: derived from the
        request's Host header when served over HTTP, none at all in-process."""

    def create_upload_location(
        self, request: dp.CreateUploadLocationRequest, ctx: RequestContext[Any, Any] | None
    ) -> dp.CreateUploadLocationResponse:
        validate(request)
        if not request.filename_root and not request.content_md5:
            raise ConnectError(Code.INVALID_ARGUMENT, "either filename_root or content_md5 must be provided")
        if request.content_md5 and len(request.content_md5) != 16:
            raise ConnectError(Code.INVALID_ARGUMENT, "content_md5: must be the 16 bytes of an MD5 digest")
        expires_in = MAX_EXPIRES_IN_S
        if request.HasField("expires_in"):
            expires_in = request.expires_in.ToTimedelta().total_seconds()
            if not 0 < expires_in <= MAX_EXPIRES_IN_S:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"expires_in: {expires_in:.0f}s is not within (0, {MAX_EXPIRES_IN_S:.0f}s]",
                )
        if request.content_length > self.max_upload_bytes:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"content_length: {request.content_length} bytes exceeds the maximum of "
                f"{self.max_upload_bytes} bytes",
            )
        if self.store.get_project(request.project) is None:
            raise ConnectError(Code.NOT_FOUND, f"project {request.project!r} not found")
        key = _key(request)
        try:
            self._refuse_overwrite(key, request)
            signed = self.blobs.sign_put(
                key,
                md5=request.content_md5,
                expires_in_s=expires_in,
                md5_metadata=request.add_content_md5_metadata,
                base_url=self.base_url or (caller_base_url(ctx) if ctx is not None else None),
            )
        except StorageError as exc:
            raise ConnectError(Code.INTERNAL, str(exc)) from exc
        expires_at = Timestamp()
        expires_at.FromNanoseconds(int(signed.expires_at * 1e9))
        return dp.CreateUploadLocationResponse(
            signed_url=signed.signed_url,
            native_url=signed.native_url,
            expires_at=expires_at,
            headers=signed.headers,
        )

    def _refuse_overwrite(self, key: str, request: dp.CreateUploadLocationRequest) -> None:
        if not request.filename or not request.filename_root:
            return
        stored = self.blobs.stored_md5(key)
        if stored is None:
            return
        if not request.content_md5:
            raise ConnectError(
                Code.ALREADY_EXISTS,
                f"file already exists at {self.blobs.native_url(key)}; content_md5 is required to "
                "verify a safe overwrite",
            )
        if stored != request.content_md5:
            raise ConnectError(
                Code.ALREADY_EXISTS,
                f"file already exists at {self.blobs.native_url(key)} with different content",
            )


def _key(request: dp.CreateUploadLocationRequest) -> str:
    root = request.filename_root or base64.b32encode(request.content_md5).decode()
    parts = [request.project, request.domain, *root.split("/"), request.filename]
    parts = [p for p in parts if p]
    for part in parts:
        if not _COMPONENT.fullmatch(part) or part in (".", ".."):
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"upload path component {part[:80]!r} must be 1-255 characters of [A-Za-z0-9._=-]",
            )
    return "/".join(parts)

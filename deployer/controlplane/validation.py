"""Request validation of the embedded control plane: INVALID_ARGUMENT with the field and the rule.

The flyteidl2 messages carry buf.validate rules (`name` 1–255 chars, `project`/`domain`/`version`
1–63, required `task_id`/`spec`, ...); `protovalidate` enforces them as the real control plane does.
Two deliberate differences:
- an empty `org` is accepted: an open-source, single-tenant control plane has no organisation, and
  the flyte SDK sends `org=""` when none is configured (`flyte deploy` against us must work);
- a version must also be made of `[A-Za-z0-9._-]`, the characters every Flyte version, image tag
  and URL path segment can carry (`+` from semver build metadata, `/` or spaces are refused).
"""

from __future__ import annotations

import re

import protovalidate
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.task.task_service_pb2 import DeployTaskRequest
from google.protobuf.message import Message

VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,63}")

_ORG_FIELDS = {"org", "organization"}


def validate(request: Message) -> None:
    """Raise INVALID_ARGUMENT naming every violated field rule of `request`."""
    try:
        protovalidate.validate(request)
    except protovalidate.ValidationError as exc:
        problems = [_describe(v) for v in exc.violations if not _empty_org(v, request)]
        if problems:
            raise ConnectError(Code.INVALID_ARGUMENT, "; ".join(problems)) from None


def validate_version(version: str, *, field: str = "task_id.version") -> None:
    if not VERSION_PATTERN.fullmatch(version):
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"{field}: version {version!r} must be 1-63 characters of [A-Za-z0-9._-]",
        )


def validate_deploy(request: DeployTaskRequest) -> None:
    validate(request)
    validate_version(request.task_id.version)
    template_id = request.spec.task_template.id
    for field in ("org", "project", "domain", "name", "version"):
        sent, inside = getattr(request.task_id, field), getattr(template_id, field)
        if sent != inside:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"task_id.{field} is {sent!r} but spec.task_template.id.{field} is {inside!r}",
            )


def _describe(violation: protovalidate.Violation) -> str:
    proto = violation.proto
    elements = proto.field.elements if proto.field is not None else ()
    path = ".".join(e.field_name for e in elements) or "<request>"
    return f"{path}: {proto.message}"


def _empty_org(violation: protovalidate.Violation, request: Message) -> bool:
    field = violation.proto.field
    elements = field.elements if field is not None else ()
    if not elements or elements[-1].field_name not in _ORG_FIELDS:
        return False
    value: object = request
    for element in elements:
        value = getattr(value, element.field_name, None)
    return value == ""

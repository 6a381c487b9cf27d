"""Request validation of the embedded control plane: INVALID_ARGUMENT with the field and the rule.

The flyteidl2 messages carry buf.validate rules (`name` 1–255 chars, `project`/`domain`/`version`
1–63, required `task_id`/`spec`, ...); `protovalidate` enforces them as the real control plane does.
Two deliberate differences:
- an empty `org` is accepted: an open-source, single-tenant control plane has no organisation, and
  the flyte SDK sends `org=""` when none is configured (`flyte deploy` against us must work);
- a version must also be made of `[A-Za-z0-9._-]`, the characters every Flyte version, image tag
  and URL path segment can carry (`+` from semver build metadata, `/` or spaces are refused).

And size limits, so one request cannot fill the database: a spec of at most `MAX_SPEC_BYTES` encoded,
no string or bytes field in it longer than `MAX_FIELD_BYTES` (a real spec's longest is the gzipped
image lookup: kilobytes), both INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import re
from typing import Any

import protovalidate
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.task.task_service_pb2 import DeployTaskRequest
from google.protobuf.message import Message

VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,63}")
MAX_SPEC_BYTES = 1 << 20
MAX_FIELD_BYTES = 64 << 10

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
    size = request.spec.ByteSize()
    if size > MAX_SPEC_BYTES:
        raise ConnectError(
            Code.INVALID_ARGUMENT, f"spec: {size} bytes encoded, more than the {MAX_SPEC_BYTES} allowed"
        )
    oversized = _oversized_field(request.spec, "spec")
    if oversized is not None:
        path, length = oversized
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"{path}: {length} bytes, more than the {MAX_FIELD_BYTES} allowed in one field",
        )
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
    value: Any = request
    for element in elements:
        value = getattr(value, element.field_name, None)
        subscript = getattr(element, "subscript", None)
        if subscript is not None and getattr(subscript, "field", None) == "index" and value is not None:
            # An element of a repeated field, e.g. `names[0].org`.
            value = value[subscript.value]
    return bool(value == "")


def _oversized_field(message: Message, path: str) -> tuple[str, int] | None:
    """The first string/bytes field (depth first) longer than `MAX_FIELD_BYTES`, with its path."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            for item in value if field.is_repeated else (value,):
                if len(item) > MAX_FIELD_BYTES:
                    return where, len(item)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                items = list(value.items())
                for key, item in items:
                    if len(str(key)) > MAX_FIELD_BYTES:
                        return f"{where}[key]", len(str(key))
                    if isinstance(item, Message):
                        found = _oversized_field(item, f"{where}[{str(key)[:40]}]")
                        if found:
                            return found
                    elif isinstance(item, str | bytes) and len(item) > MAX_FIELD_BYTES:
                        return f"{where}[{str(key)[:40]}]", len(item)
            else:
                for index, item in enumerate(value if field.is_repeated else (value,)):
                    found = _oversized_field(item, f"{where}[{index}]" if field.is_repeated else where)
                    if found:
                        return found
    return None

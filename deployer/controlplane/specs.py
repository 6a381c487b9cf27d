"""How two `TaskSpec`s are compared: the one rule shared by our client and our server.

A spec is identified by its deterministic protobuf encoding (map entries sorted, fields in number
order). Nothing is normalised away: measured on flyte 2.12.1, serializing the same task twice, in
two processes, gives identical bytes once the inputs that *could* vary are pinned by
`serialize.task_specs` (the image lookup is sorted by env name and the image cache is gzipped with
mtime 0; `_F_SYS_PATH` comes from an explicit list of paths). Whatever still differs is a real
difference (another flyte release, another image digest, edited code), and under one version that is
a conflict.
"""

from __future__ import annotations

import hashlib

from flyteidl2.task.task_definition_pb2 import TaskSpec
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def canonical_bytes(spec: Message) -> bytes:
    return spec.SerializeToString(deterministic=True)


def spec_digest(spec: Message) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(spec)).hexdigest()


def spec_from_bytes(data: bytes) -> TaskSpec:
    spec = TaskSpec()
    spec.ParseFromString(data)
    return spec


def spec_differences(old: Message, new: Message, *, limit: int = 3) -> list[str]:
    """Dotted paths of the leaf fields that differ, e.g. `task_template.container.image`.

    Repeated fields are compared as a whole (`task_template.container.args`), which is the level a
    user can act on."""
    found: list[str] = []
    _diff(_as_dict(old), _as_dict(new), "", found)
    return found[:limit] if limit else found


def _as_dict(message: Message) -> dict[str, object]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _diff(old: object, new: object, path: str, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else key, found)
    elif old != new:
        found.append(path or "<spec>")

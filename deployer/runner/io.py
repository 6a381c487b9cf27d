"""Task inputs and outputs in Flyte's wire format, converted with the SDK's own type engine.

The runner has only the deployed `TaskSpec`, not the user's Python types, so types are guessed from
the spec's typed interface exactly as `flyte.remote` does for deployed tasks.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from flyteidl2.core import execution_pb2
from flyteidl2.task import common_pb2
from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import RunError, UsageError


def parse_input_flags(values: Sequence[str]) -> dict[str, str]:
    """`--input NAME=JSON` values, raw (decoded against the task's types later)."""
    raw: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--input {value!r}: expected NAME=JSON, e.g. --input count=3")
        if name in raw:
            raise UsageError(f"--input {name} is given twice")
        raw[name.strip()] = text
    return raw


def encode_inputs(spec: TaskSpec, raw: Mapping[str, str]) -> bytes:
    """Serialized `common_pb2.Inputs` (the runtime's `inputs.pb`) for the task's interface."""
    from flyte._internal.runtime.convert import convert_from_native_to_inputs
    from flyte._utils.asyn import run_sync
    from flyte.types import guess_interface

    interface = guess_interface(spec.task_template.interface, default_inputs=spec.default_inputs)
    task = spec.task_template.id.name or spec.short_name
    unknown = sorted(set(raw) - set(interface.inputs))
    if unknown:
        known = ", ".join(interface.inputs) or "none"
        raise UsageError(f"--input {unknown[0]}: task {task} has no such input (inputs: {known})")
    missing = [name for name in interface.required_inputs() if name not in raw]
    if missing:
        raise UsageError(f"task {task} needs --input for: {', '.join(missing)}")
    values = {name: _decode(name, text, interface.inputs[name][0]) for name, text in raw.items()}
    try:
        inputs = run_sync(convert_from_native_to_inputs, interface, **values)
    except Exception as exc:
        raise UsageError(f"--input values do not fit task {task}'s interface: {_one_line(exc)}") from exc
    serialized: bytes = inputs.proto_inputs.SerializeToString()
    return serialized


def _decode(name: str, text: str, py_type: Any) -> Any:
    from flyte._utils.asyn import run_sync
    from flyte.types._json_coercion import coerce_json_value

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # A bare word is the natural way to type a string on a command line: accept it for str inputs.
        if py_type is str:
            return text
        raise UsageError(f"--input {name}={text}: not valid JSON") from None
    from flyte.types import TypeEngine

    try:
        native = run_sync(coerce_json_value, _widen_numbers(value, py_type), py_type)
        # Converting now names the culprit; converting all inputs at once would not.
        run_sync(TypeEngine.to_literal, native, py_type, TypeEngine.to_literal_type(py_type))
    except Exception as exc:
        raise UsageError(
            f"--input {name}={text}: cannot be read as {_type_name(py_type)}: {_one_line(exc)}"
        ) from exc
    return native


def _widen_numbers(value: Any, py_type: Any) -> Any:
    """JSON does not tell 1 from 1.0: read an integer where a float is expected as that float."""
    from flyte.types._json_coercion import unwrap_optional_type

    py_type = unwrap_optional_type(py_type)
    if py_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if origin is list and args and isinstance(value, list):
        return [_widen_numbers(item, args[0]) for item in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {key: _widen_numbers(item, args[1]) for key, item in value.items()}
    return value


def _one_line(exc: BaseException) -> str:
    """The type engine explains itself over several lines; the CLI shows one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith("Reason:")), None)
    return reason.removeprefix("Reason:").strip() if reason else " ".join(lines) or type(exc).__name__


def decode_outputs(spec: TaskSpec, data: bytes) -> dict[str, Any]:
    """`outputs.pb` as JSON-ready values keyed by output name (`o0`, `o1`, ...)."""
    from flyte._internal.runtime.convert import Outputs, convert_outputs_to_native
    from flyte._utils.asyn import run_sync
    from flyte.types import guess_interface
    from flyte.types._json_coercion import serialize_json_value

    interface = guess_interface(spec.task_template.interface, default_inputs=spec.default_inputs)
    proto = common_pb2.Outputs()
    proto.ParseFromString(data)
    native = run_sync(convert_outputs_to_native, interface, Outputs(proto_outputs=proto))
    names = list(interface.outputs)
    values = (native,) if len(names) == 1 else tuple(native or ())
    return {
        name: run_sync(serialize_json_value, value, interface.outputs[name])
        for name, value in zip(names, values, strict=True)
    }


def read_error(data: bytes) -> tuple[str, str]:
    """The runtime's `error.pb` as (code, full message)."""
    document = execution_pb2.ErrorDocument()
    try:
        document.ParseFromString(data)
    except Exception as exc:
        raise RunError(f"the task failed and its error.pb cannot be read: {exc}") from exc
    return document.error.code, document.error.message


def one_line(code: str, message: str) -> str:
    """The error code and the last line of a (usually traceback-shaped) message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else "(no message)"
    return last if not code or code in last else f"{code}: {last}"


def _type_name(py_type: Any) -> str:
    if typing.get_origin(py_type) is None and hasattr(py_type, "__name__"):
        return str(py_type.__name__)
    # guess_interface answers with typing.List/Dict; show the builtin spelling users write.
    text = str(py_type).replace("typing.", "")
    return re.sub(r"\b(List|Dict|Tuple|Set)\[", lambda m: m.group(1).lower() + "[", text)

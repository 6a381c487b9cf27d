"""Task inputs and outputs in Flyte's wire format, converted with the SDK's own type engine.

The runner has only the deployed `TaskSpec`, not the user's Python types, so types are guessed from
the spec's typed interface exactly as `flyte.remote` does for deployed tasks. Values are read as a
person types them (`deployer.runner.values`). A File/Dir input given as a local path is copied into the
run's raw-data dir (mounted at the same path in container mode) and the task reads that copy; a File/Dir
output the task wrote there is copied out to a local download dir, whose path is the printed value.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flyteidl2.core import literals_pb2, types_pb2
from flyteidl2.task import common_pb2
from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.errors import RunError, StorageError, UsageError
from deployer.runner.container_files import ContainerFiles, copy_out
from deployer.runner.values import BadValue, BlobKind, Reader, local_path, to_json_ready, type_name
from deployer.storage import fetch

Stage = Callable[[Path | str, BlobKind, str], str]
"""Where the task reads a File/Dir input from, given its local path (or storage URI), its kind and the
input name."""

_T = TypeVar("_T")
_FLAG = "--input"


@dataclass(frozen=True)
class RawInput:
    """One input as given, before it is read against the task's type."""

    value: Any
    """The text after `--input NAME=`, or the (JSON/YAML-typed) value of an input file."""
    source: str = _FLAG
    """`--input`, or the input file's name."""

    def label(self, name: str) -> str:
        """Where the input was given: `--input NAME` or `FILE: NAME`."""
        return f"{_FLAG} {name}" if self.source == _FLAG else f"{self.source}: {name}"

    def where(self, name: str) -> str:
        """The input as the user gave it, to start an error line with."""
        if self.source == _FLAG:
            return f"{_FLAG} {name}={_clip(str(self.value))}"
        return self.label(name)


def parse_input_flags(values: Sequence[str]) -> dict[str, str]:
    """`--input NAME=VALUE` values, raw (read against the task's types later)."""
    raw: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--input {value!r}: expected NAME=VALUE, e.g. --input count=3")
        if name in raw:
            raise UsageError(f"--input {name} is given twice")
        raw[name] = text
    return raw


def read_input_file(path: Path) -> dict[str, Any]:
    """An inputs file: a JSON or YAML (`.yaml`/`.yml`) mapping of input name to value."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise UsageError(f"--input-file {path}: expected a .json, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--input-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input-file {path}: cannot be read ({exc})") from None
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--input-file {path}: not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise UsageError(f"--input-file {path}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"--input-file {path}: expected a mapping of input name to value, got {_json_kind(data)}"
        )
    for key in data:
        if not isinstance(key, str):
            raise UsageError(f"--input-file {path}: input names are strings, got {key!r}")
    return data


def parse_inputs(flags: Sequence[str], input_file: Path | None = None) -> dict[str, RawInput]:
    """Every input given: the input file's, then `--input` flags (which win over the file)."""
    raw: dict[str, RawInput] = {}
    if input_file is not None:
        raw.update({k: RawInput(v, source=input_file.name) for k, v in read_input_file(input_file).items()})
    raw.update({k: RawInput(v) for k, v in parse_input_flags(flags).items()})
    return raw


def check_inputs(spec: TaskSpec, raw: Mapping[str, RawInput | str]) -> None:
    """Fail with one line on the first input the task cannot take; nothing is written."""
    _read_inputs(spec, raw, lambda path, _kind, _name: str(path))


def encode_inputs(spec: TaskSpec, raw: Mapping[str, RawInput | str], raw_data: Path) -> bytes:
    """Serialized `common_pb2.Inputs` (the runtime's `inputs.pb`), defaults filled in for inputs not
    given. Local File/Dir inputs are copied to `raw_data/inputs/NAME/` first: the task reads the copy."""
    from flyte.types import TypeEngine

    def stage(given: Path | str, kind: BlobKind, name: str) -> str:
        folder = raw_data / "inputs" / _safe(name)
        path = Path(given) if isinstance(given, Path) else Path(urlsplit(given).path)
        target = folder / (path.name or "root")
        copies = 1
        while target.exists():  # a second file of the same name in one input (a list of Files)
            copies += 1
            target = folder / str(copies) / (path.name or "root")
        if isinstance(given, str):
            # Fetched here with the caller's credentials: the task itself is never handed them.
            fetched = fetch(given, target, tree=kind == "dir")
            return given if fetched is None else str(fetched)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(path, target)
        return str(target)

    interface = _interface(spec)
    values = _read_inputs(spec, raw, stage, interface)
    literals = []
    for name, literal_type in interface.input_types.items():
        if name not in values:
            literals.append(common_pb2.NamedLiteral(name=name, value=interface.defaults[name]))
            continue
        py_type = interface.inputs[name]
        try:
            literal = _run(TypeEngine.to_literal(values[name], py_type, literal_type))
        except Exception as exc:
            raise UsageError(
                f"{_raw(raw[name]).where(name)}: cannot be sent as {type_name(py_type)}: {_one_line(exc)}"
            ) from exc
        literals.append(common_pb2.NamedLiteral(name=name, value=literal))
    serialized: bytes = common_pb2.Inputs(literals=literals).SerializeToString()
    return serialized


def decode_outputs(
    spec: TaskSpec,
    data: bytes,
    download_dir: Path | None = None,
    *,
    container_files: ContainerFiles | None = None,
) -> dict[str, Any]:
    """`outputs.pb` as JSON-ready values keyed by output name (`o0`, `o1`, ...). File/Dir outputs
    are copied to `download_dir/NAME/` and given as that local path (a remote URI stays as it is);
    in container mode, paths of the container are read where `container_files` puts them."""

    def save(uri: str, kind: BlobKind, name: str) -> Path | str:
        return _download(uri, kind, name, download_dir, container_files)

    interface = _interface(spec)
    native = _native_outputs(interface, data)
    return {
        name: to_json_ready(native[name], py_type, save, name) for name, py_type in interface.outputs.items()
    }


def copy_outputs_out(spec: TaskSpec, outputs_dir: Path, files: ContainerFiles, container: Any) -> None:
    """Container mode, before the container is removed: the File/Dir outputs it keeps in its own
    filesystem (not on the mount) are copied out, to where `files` says."""
    outputs = outputs_dir / "outputs.pb"
    if not outputs.is_file():
        return
    paths: list[str] = []

    def note(uri: str, _kind: BlobKind, _name: str) -> str:
        path = local_path(uri)
        if path is not None:
            paths.append(path)
        return uri

    interface = _interface(spec)
    try:
        native = _native_outputs(interface, outputs.read_bytes())
    except RunError:
        return  # reading the outputs again after the run reports it
    for name, py_type in interface.outputs.items():
        to_json_ready(native[name], py_type, note, name)
    copy_out(container, paths, files)


# ---------------------------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class _Interface:
    task: str
    inputs: dict[str, Any]
    """Input name → the Python type guessed from the spec, in the spec's order."""
    input_types: dict[str, types_pb2.LiteralType]
    defaults: dict[str, literals_pb2.Literal]
    outputs: dict[str, Any]


def _interface(spec: TaskSpec) -> _Interface:
    from flyte.types import guess_interface

    _load_transformers(spec)
    typed = spec.task_template.interface
    guessed = guess_interface(typed, default_inputs=spec.default_inputs)
    return _Interface(
        task=spec.task_template.id.name or spec.short_name,
        inputs={name: guessed.inputs[name][0] for name in guessed.inputs},
        input_types={var.key: var.value.type for var in typed.inputs.variables},
        defaults={
            d.name: d.parameter.default for d in spec.default_inputs if d.parameter.HasField("default")
        },
        outputs=dict(guessed.outputs),
    )


def _load_transformers(spec: TaskSpec) -> None:
    """The SDK registers a type's transformer when the module defining the type is imported: File and
    Dir with `flyte.io`, DataFrame on first access (it pulls in the structured-dataset engine)."""
    import flyte.io

    typed = spec.task_template.interface
    if any(
        "structured_dataset_type" in str(var.value.type)
        for var in (*typed.inputs.variables, *typed.outputs.variables)
    ):
        _ = flyte.io.DataFrame


def _read_inputs(
    spec: TaskSpec,
    raw: Mapping[str, RawInput | str],
    stage: Stage,
    interface: _Interface | None = None,
) -> dict[str, Any]:
    interface = interface or _interface(spec)
    task = interface.task
    unknown = [name for name in raw if name not in interface.inputs]
    if unknown:
        known = ", ".join(interface.inputs) or "none"
        name = unknown[0]
        raise UsageError(f"{_raw(raw[name]).label(name)}: task {task} has no such input (inputs: {known})")
    values: dict[str, Any] = {}
    for name, given in raw.items():
        item = _raw(given)
        staged = functools.partial(_stage_as, stage, name)
        reader = Reader(staged, staged)
        py_type = interface.inputs[name]
        try:
            if item.source == _FLAG:
                values[name] = reader.from_text(str(item.value), py_type)
            else:
                values[name] = reader.from_data(item.value, py_type)
        except BadValue as exc:
            raise UsageError(f"{item.where(name)}: {exc.message}") from None
        except StorageError as exc:
            raise UsageError(f"{item.where(name)}: {exc}") from None
    missing = [name for name in interface.inputs if name not in raw and name not in interface.defaults]
    if missing:
        raise UsageError(f"task {task} needs --input for: {', '.join(missing)}")
    return values


def _stage_as(stage: Stage, name: str, path: Path | str, kind: BlobKind) -> str:
    return stage(path, kind, name)


def _native_outputs(interface: _Interface, data: bytes) -> dict[str, Any]:
    from flyte.types import TypeEngine

    proto = common_pb2.Outputs()
    try:
        proto.ParseFromString(data)
    except Exception as exc:
        raise RunError(f"task {interface.task}'s outputs.pb cannot be read: {exc}") from exc
    literal_map = literals_pb2.LiteralMap(literals={item.name: item.value for item in proto.literals})
    missing = [name for name in interface.outputs if name not in literal_map.literals]
    if missing:
        raise RunError(f"task {interface.task} wrote no value for its output {missing[0]}")
    try:
        return _run(TypeEngine.literal_map_to_kwargs(literal_map, interface.outputs))
    except Exception as exc:
        raise RunError(f"task {interface.task}'s outputs cannot be read: {_one_line(exc)}") from exc


def _download(
    uri: str, kind: BlobKind, name: str, download_dir: Path | None, files: ContainerFiles | None
) -> Path | str:
    path = local_path(uri)
    if download_dir is None or path is None:
        return uri
    if not Path(path).is_absolute():
        raise RunError(f"output {name} ({kind} {uri}) is a relative path: where the task meant it is unknown")
    source = files.on_host(path) if files else Path(os.path.normpath(path))
    if files is not None and not files.holds(source):
        # A link on the mount pointing into this host's filesystem: the container's files only.
        raise RunError(f"output {name} ({kind} {uri}) leads out of the task's own files")
    target = download_dir / _safe(name) / (source.name or "root")
    if target.is_symlink() or target.is_file():  # the same output downloaded again: a fresh copy
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "dir":
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copyfile(source, target)
    except OSError as exc:
        raise RunError(f"output {name} ({kind} {uri}) cannot be copied to {target}: {exc.strerror}") from exc
    return target


def _raw(value: RawInput | str) -> RawInput:
    return value if isinstance(value, RawInput) else RawInput(value)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    from deployer.controlplane.sync import run_coroutine

    return run_coroutine(coro)


def _safe(name: str) -> str:
    """A path component for an input or output name (`o0`, `o0[1]`, `o0.report`)."""
    return re.sub(r"[^\w.\-\[\]]", "_", name) or "_"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _one_line(exc: BaseException) -> str:
    """The type engine explains itself over several lines; the CLI shows one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith("Reason:")), None)
    return reason.removeprefix("Reason:").strip() if reason else " ".join(lines) or type(exc).__name__

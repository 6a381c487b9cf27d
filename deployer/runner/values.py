"""Task input values as a person types them, and task outputs as JSON-ready values.

The Python types here are the ones the SDK guesses from a deployed task's interface (`flyte.types.
guess_interface`): builtins, `datetime`/`timedelta`, a `DynamicEnum` whose members are the names on
the wire, dataclasses and pydantic models rebuilt from their JSON schema, `list`/`dict`, `Optional`,
and `flyte.io.File`/`Dir`. A wrong value raises `BadValue`, which says what the type takes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

BlobKind = Literal["file", "dir"]
LocalBlob = Callable[[Path, BlobKind], str]
RemoteBlob = Callable[[str, BlobKind], str]
"""Where a File/Dir given as a storage URI is read from: a local copy, or the URI itself."""


def _as_given(uri: str, _kind: BlobKind) -> str:
    return uri


"""Where a local File/Dir input is read from by the task: given the local path, the path to pass."""
SaveBlob = Callable[[str, BlobKind, str], "Path | str"]
"""Brings a File/Dir output (its URI, its kind, its output name) to a local path (or keeps its URI)."""

_DATETIME_EXAMPLE = "2024-01-02T03:04:05"


@dataclasses.dataclass(frozen=True)
class _Scalar:
    """How errors speak of a value typed bare on a command line."""

    described: str
    plural: str
    example: str


_SCALARS = {
    str: _Scalar("a string", "strings", '"a"'),
    bool: _Scalar("true or false", "booleans", "true"),
    int: _Scalar("an integer", "integers", "1"),
    float: _Scalar("a number", "numbers", "1.5"),
    dt.datetime: _Scalar(
        f"an ISO 8601 datetime (e.g. {_DATETIME_EXAMPLE})", "ISO 8601 datetimes", f'"{_DATETIME_EXAMPLE}"'
    ),
    dt.date: _Scalar("an ISO 8601 date (e.g. 2024-01-02)", "ISO 8601 dates", '"2024-01-02"'),
    dt.timedelta: _Scalar(
        "a duration: ISO 8601 (e.g. PT2H, P1DT30M) or seconds (e.g. 90)", "durations", '"PT2H"'
    ),
}
_DURATION = re.compile(
    r"(?P<sign>[-+])?P(?!$)(?:(?P<years>\d+(?:[.,]\d+)?)Y)?(?:(?P<months>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?",
    re.IGNORECASE,
)
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_NULL = frozenset({"null", "none"})


class BadValue(ValueError):
    """A value its type cannot take: `at` (a field or item path inside the value), what was expected,
    what was given, and why when that is not plain from the two."""

    def __init__(self, expected: str, got: str, *, reason: str = "", at: str = "") -> None:
        self.expected, self.got, self.reason, self.at = expected, got, reason, at
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"expected {self.expected}, got {self.got}"
        text = f"{self.at}: {text}" if self.at else text
        return f"{text} ({self.reason})" if self.reason else text

    def inside(self, step: str) -> BadValue:
        """The same problem, one level further out (`step` is a field name or `[index]`)."""
        at = step + ("" if not self.at else self.at if self.at.startswith("[") else f".{self.at}")
        return BadValue(self.expected, self.got, reason=self.reason, at=at)


# ---------------------------------------------------------------------------------------------- types


def unwrap_optional(py_type: Any) -> tuple[Any, bool]:
    """(`T`, True) for `Optional[T]`; (`py_type`, False) for anything else."""
    args = typing.get_args(py_type)
    if _is_union(py_type) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], True
        return typing.Union[tuple(rest)], True  # noqa: UP007 - built from a runtime tuple
    return py_type, False


def _is_union(py_type: Any) -> bool:
    return typing.get_origin(py_type) in (typing.Union, types.UnionType)


def _is_struct(py_type: Any) -> bool:
    return isinstance(py_type, type) and (
        dataclasses.is_dataclass(py_type) or (issubclass(py_type, BaseModel) and not _is_blob(py_type))
    )


def _is_blob(py_type: Any) -> bool:
    return _blob_kind(py_type) is not None


def _blob_kind(py_type: Any) -> BlobKind | None:
    from flyte.io import Dir, File

    if isinstance(py_type, type) and issubclass(py_type, File):
        return "file"
    if isinstance(py_type, type) and issubclass(py_type, Dir):
        return "dir"
    return None


def type_name(py_type: Any) -> str:
    """How a user spells the type: `list[float]`, `dict[str, int]`, `Point`, `Optional[bool]`."""
    inner, optional = unwrap_optional(py_type)
    if optional:
        return f"Optional[{type_name(inner)}]"
    if _is_union(py_type):
        return " | ".join(type_name(arg) for arg in typing.get_args(py_type))
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(arg) for arg in args)}]" if args else name
    if isinstance(py_type, type) and issubclass(py_type, enum.Enum):
        return "enum"
    return str(getattr(py_type, "__name__", py_type))


def describe(py_type: Any) -> str:
    """What a value of `py_type` looks like, as the `expected ...` of an error."""
    inner, optional = unwrap_optional(py_type)
    if optional:
        return f"{describe(inner)} or null"
    if _is_union(py_type):
        return " or ".join(describe(arg) for arg in typing.get_args(py_type))
    if py_type in _SCALARS:
        return _SCALARS[py_type].described
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if origin is list:
        item = args[0] if args else Any
        return f"a JSON list of {_plural(item)} (e.g. [{_example(item)}])"
    if origin is dict:
        item = args[1] if len(args) == 2 else Any
        return f'a JSON object of {_plural(item)} (e.g. {{"key": {_example(item)}}})'
    if isinstance(py_type, type) and issubclass(py_type, enum.Enum):
        return "one of " + ", ".join(member.name for member in py_type)
    kind = _blob_kind(py_type)
    if kind == "file":
        return "a File: a local file or a storage URI"
    if kind == "dir":
        return "a Dir: a local directory or a storage URI"
    if _is_struct(py_type):
        fields = _struct_fields(py_type)
        required = [name for name, (_, needed) in fields.items() if needed]
        extra = [name for name, (_, needed) in fields.items() if not needed]
        text = f"{_article(py_type.__name__)} {py_type.__name__}: a JSON object"
        if required:
            text += " with " + ", ".join(required)
        if extra:
            text += (" and optionally " if required else " with optionally ") + ", ".join(extra)
        return text
    return f"a value of type {type_name(py_type)}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _plural(py_type: Any) -> str:
    inner, optional = unwrap_optional(py_type)
    if optional:
        return f"{_plural(inner)} or nulls"
    if py_type in _SCALARS:
        return _SCALARS[py_type].plural
    if typing.get_origin(py_type) is list:
        return "lists"
    if typing.get_origin(py_type) is dict:
        return "objects"
    return f"{type_name(py_type)} values"


def _example(py_type: Any, depth: int = 0) -> str:
    py_type, _ = unwrap_optional(py_type)
    if py_type in _SCALARS:
        return _SCALARS[py_type].example
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if depth > 1:
        return "..."
    if origin is list:
        return f"[{_example(args[0] if args else Any, depth + 1)}]"
    if origin is dict:
        return f'{{"key": {_example(args[1] if len(args) == 2 else Any, depth + 1)}}}'
    if isinstance(py_type, type) and issubclass(py_type, enum.Enum):
        return json.dumps(next(iter(py_type)).name)
    if _is_blob(py_type):
        return '"data.csv"' if _blob_kind(py_type) == "file" else '"data/"'
    if _is_struct(py_type):
        fields = list(_struct_fields(py_type).items())
        shown = ", ".join(f'"{name}": {_example(hint, depth + 1)}' for name, (hint, _) in fields[:3])
        return "{" + shown + (", ..." if len(fields) > 3 else "") + "}"
    return "..."


def _struct_fields(py_type: Any) -> dict[str, tuple[Any, bool]]:
    """A dataclass's or model's fields: name → (type, required)."""
    if dataclasses.is_dataclass(py_type):
        hints = typing.get_type_hints(py_type)
        return {
            f.name: (
                hints.get(f.name, Any),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(py_type)
            if f.init
        }
    return {name: (info.annotation, info.is_required()) for name, info in py_type.model_fields.items()}


# ---------------------------------------------------------------------------------------------- reading


class Reader:
    """Reads values for the task's types; `local_blob` and `remote_blob` decide where a File/Dir given
    as a local path or as a storage URI is read from."""

    def __init__(self, local_blob: LocalBlob, remote_blob: RemoteBlob = _as_given) -> None:
        self._local_blob = local_blob
        self._remote_blob = remote_blob

    def from_text(self, text: str, py_type: Any) -> Any:
        """A value typed on a command line: bare strings, numbers, booleans, ISO 8601 datetimes and
        durations, enum names, local paths or URIs; JSON for lists, dicts, dataclasses and models."""
        inner, optional = unwrap_optional(py_type)
        if optional:
            if text.strip().lower() in _NULL:
                return None
            return _or_null(py_type, lambda: self.from_text(text, inner))
        if _is_union(py_type):
            return self._first_variant(text, py_type, self.from_text)
        if py_type is str or py_type is Any:
            return _json_string(text) if py_type is str else text
        if py_type is bool:
            word = text.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise BadValue(describe(bool), _shown(text))
        if py_type is int:
            try:
                return int(text.strip())
            except ValueError:
                raise BadValue(describe(int), _shown(text)) from None
        if py_type is float:
            try:
                return float(text.strip())
            except ValueError:
                raise BadValue(describe(float), _shown(text)) from None
        if py_type is dt.datetime or py_type is dt.date:
            return _datetime(text, py_type)
        if py_type is dt.timedelta:
            return _duration(text)
        if isinstance(py_type, type) and issubclass(py_type, enum.Enum):
            return _enum_member(text, py_type)
        kind = _blob_kind(py_type)
        if kind is not None:
            return self._blob(text, py_type, kind)
        origin = typing.get_origin(py_type)
        if origin in (list, dict) or _is_struct(py_type):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadValue(describe(py_type), _shown(text), reason=f"not valid JSON: {exc.msg}") from None
            return self.from_data(data, py_type)
        raise BadValue(describe(py_type), _shown(text), reason=f"{type_name(py_type)} cannot be typed in")

    def from_data(self, value: Any, py_type: Any) -> Any:
        """A value already typed by JSON or YAML (an input file, or items of a JSON list/object)."""
        inner, optional = unwrap_optional(py_type)
        if value is None:
            if optional or py_type is Any:
                return None
            raise BadValue(describe(py_type), "null")
        if optional:
            return _or_null(py_type, lambda: self.from_data(value, inner))
        if _is_union(py_type):
            return self._first_variant(value, py_type, self.from_data)
        if py_type is Any:
            return value
        if py_type is str:
            if isinstance(value, str):
                return value
            raise BadValue(describe(str), _shown(value))
        if py_type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                return self.from_text(value, bool)
            raise BadValue(describe(bool), _shown(value))
        if py_type is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return self.from_text(value, int)
            raise BadValue(describe(int), _shown(value))
        if py_type is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return self.from_text(value, float)
            raise BadValue(describe(float), _shown(value))
        if py_type is dt.datetime or py_type is dt.date:
            if isinstance(value, dt.datetime):  # YAML reads unquoted timestamps itself
                return value
            if isinstance(value, dt.date):
                return dt.datetime.combine(value, dt.time.min) if py_type is dt.datetime else value
        if py_type is dt.timedelta and isinstance(value, int | float) and not isinstance(value, bool):
            return _seconds(float(value), _shown(value))
        if isinstance(value, str):
            if typing.get_origin(py_type) in (list, dict) or _is_struct(py_type):
                raise BadValue(describe(py_type), _shown(value))
            return self.from_text(value, py_type)
        origin, args = typing.get_origin(py_type), typing.get_args(py_type)
        if origin is list:
            if not isinstance(value, list):
                raise BadValue(describe(py_type), _shown(value))
            item = args[0] if args else Any
            return [self._item(f"[{i}]", element, item) for i, element in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise BadValue(describe(py_type), _shown(value))
            item = args[1] if len(args) == 2 else Any
            return {str(key): self._item(str(key), element, item) for key, element in value.items()}
        if _is_struct(py_type):
            return self._struct(value, py_type)
        location = value.get("path") or value.get("uri") if isinstance(value, dict) else None
        if _is_blob(py_type) and isinstance(location, str):
            return self.from_text(location, py_type)
        raise BadValue(describe(py_type), _shown(value))

    def _item(self, step: str, value: Any, py_type: Any) -> Any:
        try:
            return self.from_data(value, py_type)
        except BadValue as exc:
            raise exc.inside(step) from None

    def _first_variant(self, value: Any, py_type: Any, read: Callable[[Any, Any], Any]) -> Any:
        for variant in typing.get_args(py_type):
            try:
                return read(value, variant)
            except BadValue:
                continue
        raise BadValue(describe(py_type), _shown(value))

    def _struct(self, value: Any, py_type: Any) -> Any:
        if not isinstance(value, dict):
            raise BadValue(describe(py_type), _shown(value))
        fields = _struct_fields(py_type)
        unknown = [key for key in value if key not in fields]
        if unknown:
            raise BadValue(describe(py_type), _shown(value), reason=f"no field {unknown[0]!r}")
        missing = [name for name, (_, required) in fields.items() if required and name not in value]
        if missing:
            raise BadValue(describe(py_type), _shown(value), reason=f"{missing[0]!r} is missing")
        kwargs = {name: self._item(name, value[name], fields[name][0]) for name in fields if name in value}
        if dataclasses.is_dataclass(py_type):
            return typing.cast(Any, py_type)(**kwargs)
        try:
            return py_type.model_validate(kwargs)
        except ValueError as exc:  # pydantic's ValidationError: a validator of the model refused it
            raise BadValue(describe(py_type), _shown(value), reason=_first_error(exc)) from None

    def _blob(self, text: str, py_type: Any, kind: BlobKind) -> Any:
        text = text.strip()
        if not text:
            raise BadValue(describe(py_type), _shown(text))
        path = local_path(text)
        if path is None:
            return py_type(path=self._remote_blob(text, kind))
        local = Path(path).expanduser()
        if not local.exists():
            raise BadValue(describe(py_type), _shown(text), reason="no such file or directory")
        if kind == "file" and not local.is_file():
            raise BadValue(describe(py_type), _shown(text), reason="a directory, not a file")
        if kind == "dir" and not local.is_dir():
            raise BadValue(describe(py_type), _shown(text), reason="a file, not a directory")
        return py_type(path=self._local_blob(local.resolve(), kind))


def _or_null(py_type: Any, read: Callable[[], Any]) -> Any:
    """Read an Optional's value; a refusal of the value itself says null would do too."""
    try:
        return read()
    except BadValue as exc:
        if exc.at:
            raise
        raise BadValue(describe(py_type), exc.got, reason=exc.reason) from None


def local_path(uri: str) -> str | None:
    """The local path a path or `file://` URI names; None for any other URI (`s3://...`)."""
    scheme, sep, _ = uri.partition("://")
    if not sep:
        return uri
    if scheme.lower() != "file":
        return None
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


def _json_string(text: str) -> str:
    """A string as typed; a JSON string literal (`"a b"`) is read as its content."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        return value if isinstance(value, str) else text
    return text


def _datetime(text: str, py_type: Any) -> Any:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadValue(describe(py_type), _shown(text)) from None
    return value.date() if py_type is dt.date else value


def _duration(text: str) -> dt.timedelta:
    stripped = text.strip()
    try:
        return _seconds(float(stripped), _shown(text))
    except ValueError:
        pass
    match = _DURATION.fullmatch(stripped)
    if match is None:
        raise BadValue(describe(dt.timedelta), _shown(text))
    if match["years"] or match["months"]:
        raise BadValue(
            describe(dt.timedelta), _shown(text), reason="years and months have no fixed length: use days"
        )
    parts = {
        unit: float(match[unit].replace(",", "."))
        for unit in ("weeks", "days", "hours", "minutes", "seconds")
        if match[unit]
    }
    value = dt.timedelta(**parts)
    return -value if match["sign"] == "-" else value


def _seconds(seconds: float, shown: str) -> dt.timedelta:
    if not math.isfinite(seconds):
        raise BadValue(describe(dt.timedelta), shown)
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise BadValue(describe(dt.timedelta), shown, reason="too long") from None


def _enum_member(text: str, py_type: Any) -> Any:
    word = text.strip()
    members = list(py_type)
    for match in (
        lambda m: m.name == word,
        lambda m: isinstance(m.value, str) and m.value == word,
        lambda m: m.name.lower() == word.lower(),
    ):
        found = [member for member in members if match(member)]
        if len(found) == 1:
            return found[0]
    raise BadValue(describe(py_type), _shown(text))


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return " ".join(str(exc).split())


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- writing


def to_json_ready(value: Any, py_type: Any, save: SaveBlob, name: str) -> Any:
    """An output value as JSON: datetimes ISO 8601, durations ISO 8601 (`PT1H30M`), enums by name,
    dataclasses and models as objects, File/Dir as the local path `save` brought them to."""
    if value is None:
        return None
    inner, _ = unwrap_optional(py_type)
    py_type = type(value) if _is_union(inner) or inner is Any else inner
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    if isinstance(value, enum.Enum):
        return value.name
    kind = _blob_kind(type(value))
    if kind is not None:
        if kind == "dir" and value.is_empty:
            return None
        return str(save(value.path, kind, name))
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if isinstance(value, list | tuple):
        item = args[0] if origin is list and args else Any
        return [to_json_ready(element, item, save, f"{name}[{i}]") for i, element in enumerate(value)]
    if isinstance(value, dict):
        item = args[1] if origin is dict and len(args) == 2 else Any
        # A typed dict travels as a literal map, which keeps no order: print it sorted, the same each run.
        keys = sorted(value, key=str) if origin is dict else list(value)
        return {str(k): to_json_ready(value[k], item, save, f"{name}.{k}") for k in keys}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value))
        return {
            f.name: to_json_ready(getattr(value, f.name), hints.get(f.name, Any), save, f"{name}.{f.name}")
            for f in dataclasses.fields(value)
        }
    if isinstance(value, BaseModel):
        return {
            field: to_json_ready(getattr(value, field), info.annotation, save, f"{name}.{field}")
            for field, info in type(value).model_fields.items()
        }
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def iso_duration(value: dt.timedelta) -> str:
    """`P1DT30M`, `PT1H30M`, `PT0.5S`, `-PT2H`, `PT0S`: ISO 8601, as `--input` reads durations."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days, rest = value.days, value.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{days}D" if days else ""
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or value.microseconds:
        clock += f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".") + "S"
    if clock:
        text += "T" + clock
    return f"{sign}P{text or 'T0S'}"

"""Which cron schedules a Flyte 2 control plane accepts: the rule our client checks before registering
anything and our embedded plane enforces, so a bad schedule is one clear error and nothing is written.

The open-source backend (`runs/schedule/cron.go`) parses `CRON_TZ=<timezone> <expression>` with robfig/cron's
standard parser: five fields (minute, hour, day of month, month, day of week) made of `*`, `?`, numbers,
`a-b` ranges and `/step`s, month and weekday names (`jan`, `mon`), or one of the descriptors `@yearly`,
`@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`. The time zone
must be one Go can load: we accept the names the flyte SDK offers for `flyte.Cron(timezone=...)` and
whatever this machine's time zone database knows.
"""

from __future__ import annotations

import functools
import re
import typing
import zoneinfo

import flyte

_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),
)


def cron_problem(expression: str, timezone: str = "") -> str | None:
    """Why the control plane would refuse this schedule, or None when it accepts it."""
    if timezone and not known_timezone(timezone):
        return f"unknown time zone {timezone!r}"
    text = expression.strip()
    if not text:
        return "the cron expression is empty"
    if text.startswith("@"):
        if text in _DESCRIPTORS:
            return None
        if text.startswith("@every "):
            duration = text.removeprefix("@every ").strip()
            return (
                None
                if _DURATION.fullmatch(duration)
                else f"@every needs a duration such as 1h30m, not {duration!r}"
            )
        return f"unknown descriptor {text.split()[0]!r}"
    fields = text.split()
    if len(fields) != len(_FIELDS):
        return (
            f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)} in {text!r}"
        )
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        problem = _field_problem(value, low, high, names)
        if problem:
            return f"{name} field {value!r}: {problem}"
    return None


def known_timezone(name: str) -> bool:
    if name in _sdk_timezones() or name in ("UTC", "Local"):
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@functools.cache
def _sdk_timezones() -> frozenset[str]:
    # `flyte.Cron.timezone` is typed as a Literal of every time zone name the SDK offers.
    hint = typing.get_type_hints(flyte.Cron).get("timezone")
    return frozenset(str(v) for v in typing.get_args(hint))


def _field_problem(field: str, low: int, high: int, names: dict[str, int]) -> str | None:
    for part in field.split(","):
        problem = _range_problem(part, low, high, names)
        if problem:
            return problem
    return None


def _range_problem(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    span, _, step = part.partition("/")
    if "/" in part and (not step.isdigit() or int(step) == 0):
        return f"step {step!r} must be a positive number"
    if span in ("*", "?"):
        return None
    first, dash, last = span.partition("-")
    start = _number(first, names)
    if start is None:
        return f"{first!r} is not a number or a name"
    end = _number(last, names) if dash else (high if step else start)
    if end is None:
        return f"{last!r} is not a number or a name"
    if start < low or end > high:
        return f"{span!r} is outside {low}-{high}"
    if start > end:
        return f"{span!r} starts after it ends"
    return None


def _number(text: str, names: dict[str, int]) -> int | None:
    if text.isdigit():
        return int(text)
    return names.get(text.lower())

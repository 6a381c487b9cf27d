"""flyteidl2 `ListRequest` options (filters, sorting, paging) over rows already in memory, for the trigger
and app services. Tokens are offsets this server issued; a page is full-sized unless it is the last."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.common import list_pb2

_T = TypeVar("_T")
DEFAULT_PAGE = 100
MAX_PAGE = 1000

_F = list_pb2.Filter.Function
_TESTS: dict[int, Callable[[str, Sequence[str]], bool]] = {
    _F.EQUAL: lambda v, xs: v == xs[0],
    _F.NOT_EQUAL: lambda v, xs: v != xs[0],
    _F.CONTAINS: lambda v, xs: xs[0] in v,
    _F.CONTAINS_CASE_INSENSITIVE: lambda v, xs: xs[0].lower() in v.lower(),
    _F.VALUE_IN: lambda v, xs: v in xs,
    _F.VALUE_NOT_IN: lambda v, xs: v not in xs,
    _F.ENDS_WITH: lambda v, xs: v.endswith(xs[0]),
    _F.NOT_ENDS_WITH: lambda v, xs: not v.endswith(xs[0]),
}


def apply(
    items: list[_T],
    options: list_pb2.ListRequest,
    *,
    fields: Mapping[str, Callable[[_T], str]],
    sort_keys: Mapping[str, Callable[[_T], Any]],
) -> tuple[list[_T], str]:
    """Filter, sort (when asked) and page `items`; returns the page and the next token ("" at the end)."""
    if options.raw_filters:
        raise ConnectError(Code.INVALID_ARGUMENT, "request.raw_filters: not supported, use request.filters")
    for f in options.filters:
        if f.field not in fields:
            known = ", ".join(sorted(fields))
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"request.filters: unknown field {f.field!r} (known: {known})"
            )
        test = _TESTS.get(f.function)
        if test is None:
            name = list_pb2.Filter.Function.Name(f.function)
            raise ConnectError(Code.INVALID_ARGUMENT, f"request.filters: function {name} is not supported")
        if not f.values:
            raise ConnectError(Code.INVALID_ARGUMENT, f"request.filters: {f.field} filter has no values")
        get = fields[f.field]
        items = [item for item in items if test(get(item), list(f.values))]
    sorts = list(options.sort_by_fields) or ([options.sort_by] if options.HasField("sort_by") else [])
    # Stable sorts from the least significant key to the most significant one.
    for sort in reversed(sorts):
        if sort.key not in sort_keys:
            known = ", ".join(sorted(sort_keys))
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"request.sort_by: unknown key {sort.key!r} (known: {known})"
            )
        items = sorted(items, key=sort_keys[sort.key], reverse=sort.direction == list_pb2.Sort.DESCENDING)
    return page(items, options)


def page(items: list[_T], options: list_pb2.ListRequest) -> tuple[list[_T], str]:
    token = options.token
    if token and (not token.isdigit() or len(token) > 12):
        raise ConnectError(
            Code.INVALID_ARGUMENT, f"request.token: {token[:40]!r} is not a token this server issued"
        )
    offset = int(token) if token else 0
    limit = min(options.limit or DEFAULT_PAGE, MAX_PAGE)
    end = offset + limit
    return items[offset:end], (str(end) if end < len(items) else "")

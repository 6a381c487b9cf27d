"""GitHub's official REST API description (npm `@octokit/openapi`): examples and validation.

Every request the fake receives and every response it sends is checked here with `openapi-core`, so a
client call GitHub would reject, or a fake response GitHub would never send, fails the test.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

# The description's only server; requests are validated as if sent there (see notes/github-api.md).
GITHUB_HOST_URL = "https://api.github.com"


@dataclass
class ApiRequest:
    """An HTTP request in the shape openapi-core reads (`openapi_core.protocols.Request`)."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    host_url: str = GITHUB_HOST_URL
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.method = self.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(self.query, keep_blank_values=True)),
            header=Headers(list(self.headers.items())),
        )

    @property
    def content_type(self) -> str:
        value = {k.lower(): v for k, v in self.headers.items()}.get("content-type", "")
        # openapi-core looks the media type up verbatim; clients add `; charset=utf-8`.
        return value.split(";")[0].strip().lower() if self.body else ""


@dataclass
class ApiResponse:
    """An HTTP response in the shape openapi-core reads (`openapi_core.protocols.Response`)."""

    status_code: int
    data: bytes | None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class GitHubDescription:
    """The parsed description, with lazily built validators and resolved examples."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            self.document: dict[str, Any] = json.load(fh)
        self._lock = threading.Lock()

    @functools.cached_property
    def _request_validator(self) -> OpenAPI:
        # Forbid properties the description does not declare: a misspelt field we send is a bug.
        config = Config(spec_validator_cls=None, additional_properties_default_policy="forbid")
        return OpenAPI.from_dict(self.document, config=config)

    @functools.cached_property
    def _response_validator(self) -> OpenAPI:
        # Skipping the whole-description self-check saves ~15 s; the description is GitHub's own.
        return OpenAPI.from_dict(self.document, config=Config(spec_validator_cls=None))

    def request_errors(self, request: ApiRequest) -> list[str]:
        with self._lock:
            return [_describe(e) for e in self._request_validator.iter_request_errors(request)]

    def response_errors(self, request: ApiRequest, response: ApiResponse) -> list[str]:
        with self._lock:
            return [_describe(e) for e in self._response_validator.iter_response_errors(request, response)]

    def operation(self, path_template: str, method: str) -> dict[str, Any]:
        return self.document["paths"][path_template][method.lower()]

    def example(self, name: str) -> Any:
        """A deep copy of `components/examples/<name>`'s value with every `$ref` resolved."""
        return self._resolve(copy.deepcopy(self.document["components"]["examples"][name]["value"]))

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                target = self._pointer(node["$ref"])
                # A `$ref` to an Example object stands for that example's value.
                if (
                    isinstance(target, dict)
                    and "value" in target
                    and node["$ref"].startswith("#/components/examples/")
                ):
                    target = target["value"]
                return self._resolve(copy.deepcopy(target))
            return {k: self._resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve(v) for v in node]
        return node

    def _pointer(self, ref: str) -> Any:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def _describe(error: Exception) -> str:
    """One line per error, including the nested schema errors openapi-core wraps."""
    parts = []
    for inner in _schema_errors(error):
        location = "/".join(str(p) for p in getattr(inner, "absolute_path", ()))
        parts.append(f"{location or '<root>'}: {_clip(str(getattr(inner, 'message', inner)))}")
    return f"{type(error).__name__}: " + ("; ".join(parts) if parts else _clip(str(error)))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_errors(error: BaseException) -> Iterator[Any]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [error.__cause__]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield from getattr(current, "schema_errors", ())
        stack.append(current.__cause__)

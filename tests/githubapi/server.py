"""A local GitHub REST API: the endpoints the deployer's PyGithub calls use, validated both ways.

Runs `http.server` in a thread on 127.0.0.1. Unknown endpoints answer 404 *and* are recorded as
failures; so is every request or response that breaks GitHub's OpenAPI description. Tests assert on
the in-memory state (comments, deployments, statuses) and can inject faults (5xx, 403).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.githubapi.resources import BOT_LOGIN, Resources
from tests.githubapi.spec import ApiRequest, ApiResponse, GitHubDescription
from tests.githubapi.state import Comment, Deployment, DeploymentStatus, Ids, Pull, Repository, now

JsonBody = dict[str, Any] | list[Any] | None
Result = tuple[int, JsonBody, dict[str, str]]


@dataclass
class Call:
    """One request as the fake saw it, for assertions on what the client did."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    message: str
    after: bool
    """Apply the request first, then answer with the fault: a response lost on the way back."""


@dataclass
class Route:
    method: str
    template: str
    handler: Callable[..., Result]
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")


class GitHubAPIServer:
    def __init__(self, description: GitHubDescription) -> None:
        self.description = description
        self._lock = threading.RLock()
        self._ids = Ids()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="github-api", daemon=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.resources = Resources(description, self.url)
        self.routes = self._routes()
        self.reset()

    # ------------------------------------------------------------------ lifecycle and test helpers
    def start(self) -> GitHubAPIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.repos: dict[str, Repository] = {}
            self.tokens: dict[str, str] = {}
            """token → "write" or "read" (a fork PR's token is read-only)."""
            self.calls: list[Call] = []
            self.failures: list[str] = []
            self._faults: list[Fault] = []

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> Repository:
        owner, name = full_name.split("/", 1)
        with self._lock:
            return self.repos.setdefault(full_name, Repository(owner, name, default_branch))

    def add_pull(
        self,
        full_name: str,
        number: int,
        *,
        head_sha: str,
        head_ref: str = "feature",
        head_repo: str | None = None,
        base_ref: str = "main",
    ) -> Pull:
        repo = self.add_repo(full_name)
        with self._lock:
            pull = Pull(number, head_sha, head_ref, head_repo or full_name, base_ref)
            repo.pulls[number] = pull
            return pull

    def add_token(self, token: str, access: str = "write") -> str:
        with self._lock:
            self.tokens[token] = access
        return token

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        message: str = "",
        after: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with `status` (GitHub's error body); with `after`,
        the request takes effect first (its response is what gets lost)."""
        text = message or {403: "Resource not accessible by integration"}.get(status, "Server Error")
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, times, text, after))

    # ------------------------------------------------------------------ dispatch
    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes | None
    ) -> tuple[int, bytes | None, dict[str, str]]:
        split = urlsplit(target)
        path, query = split.path, split.query
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace") if raw else None
        call = Call(method, path, parse_qs(query), body)
        with self._lock:
            self.calls.append(call)
        status, payload, extra = self._dispatch(method, path, query, headers, raw, body)
        call.status = status
        data = json.dumps(payload).encode() if payload is not None else None
        return status, data, {"Content-Type": "application/json; charset=utf-8", **extra}

    def _dispatch(
        self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes | None, body: Any
    ) -> Result:
        access = self._access(headers)
        if access is None:
            return 401, Resources.error("Bad credentials", 401), {}
        route, params = self._route(method, path)
        if route is None:
            self._failure(f"unknown endpoint: {method} {path}")
            return 404, Resources.error("Not Found", 404), {}
        # Requests are validated even when a fault is injected: a fault never hides a bad call.
        request = ApiRequest(method, path, query, headers, raw or None)
        errors = self.description.request_errors(request)
        if errors:
            self._failure(f"invalid request {method} {path}: " + " | ".join(errors))
            return 422, Resources.error("Validation Failed", 422), {}
        fault = self._take_fault(method, path)
        if fault is not None and not fault.after:
            return fault.status, Resources.error(fault.message, fault.status), {}
        if method != "GET" and access != "write":
            return 403, Resources.error("Resource not accessible by integration", 403), {}

        with self._lock:
            repo = self.repos.get(f"{params.pop('owner')}/{params.pop('repo')}")
            if repo is None:
                return 404, Resources.error("Not Found", 404), {}
            status, payload, extra = route.handler(repo, params, parse_qs(query), body)

        response = ApiResponse(
            status,
            json.dumps(payload).encode() if payload is not None else None,
            "application/json" if payload is not None else "",
            extra,
        )
        errors = self.description.response_errors(request, response)
        if errors:
            self._failure(f"invalid response to {method} {path} ({status}): " + " | ".join(errors))
        if fault is not None:
            return fault.status, Resources.error(fault.message, fault.status), {}
        return status, payload, extra

    def _access(self, headers: dict[str, str]) -> str | None:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        with self._lock:
            return self.tokens.get(token.strip())

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.method == method and fault.path.search(path):
                    fault.remaining -= 1
                    return fault
        return None

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            match = route.pattern.match(path)
            if match and route.method == method:
                return route, match.groupdict()
        return None, {}

    def _failure(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)

    # ------------------------------------------------------------------ endpoints
    def _routes(self) -> list[Route]:
        repo = "/repos/{owner}/{repo}"
        return [
            Route("GET", repo, self._get_repo),
            Route("GET", repo + "/pulls/{pull_number}", self._get_pull),
            Route("GET", repo + "/issues/{issue_number}", self._get_issue),
            Route("GET", repo + "/issues/{issue_number}/comments", self._list_comments),
            Route("POST", repo + "/issues/{issue_number}/comments", self._create_comment),
            Route("GET", repo + "/issues/comments/{comment_id}", self._get_comment),
            Route("PATCH", repo + "/issues/comments/{comment_id}", self._update_comment),
            Route("GET", repo + "/deployments", self._list_deployments),
            Route("POST", repo + "/deployments", self._create_deployment),
            Route("GET", repo + "/deployments/{deployment_id}", self._get_deployment),
            Route("GET", repo + "/deployments/{deployment_id}/statuses", self._list_statuses),
            Route("POST", repo + "/deployments/{deployment_id}/statuses", self._create_status),
        ]

    def _get_repo(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        return 200, self.resources.repository(repo), {}

    def _get_pull(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        pull = repo.pulls.get(int(params["pull_number"]))
        if pull is None:
            return 404, Resources.error("Not Found", 404), {}
        return 200, self.resources.pull(repo, pull), {}

    def _get_issue(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        pull = repo.pulls.get(int(params["issue_number"]))
        if pull is None:
            return 404, Resources.error("Not Found", 404), {}
        return 200, self.resources.issue(repo, pull), {}

    def _list_comments(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        number = int(params["issue_number"])
        if number not in repo.pulls:
            return 404, Resources.error("Not Found", 404), {}
        items = [self.resources.comment(repo, c) for c in repo.issue_comments(number)]
        return self._page(items, query, f"/repos/{repo.full_name}/issues/{number}/comments")

    def _create_comment(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        number = int(params["issue_number"])
        if number not in repo.pulls:
            return 404, Resources.error("Not Found", 404), {}
        comment = Comment(self._ids.next(), number, body["body"], BOT_LOGIN)
        repo.comments.append(comment)
        return 201, self.resources.comment(repo, comment), {}

    def _get_comment(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        comment = repo.comment(int(params["comment_id"]))
        if comment is None:
            return 404, Resources.error("Not Found", 404), {}
        return 200, self.resources.comment(repo, comment), {}

    def _update_comment(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        comment = repo.comment(int(params["comment_id"]))
        if comment is None:
            # The description lists no 404 here; GitHub answers 422 for a comment that is gone.
            return 422, Resources.error("Validation Failed", 422) | {"errors": []}, {}
        comment.body = body["body"]
        comment.updated_at = now()
        return 200, self.resources.comment(repo, comment), {}

    def _list_deployments(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        def keep(d: Deployment) -> bool:
            return all(
                not query.get(key) or query[key][0] == value
                for key, value in (
                    ("sha", d.sha),
                    ("ref", d.ref),
                    ("task", d.task),
                    ("environment", d.environment),
                )
            )

        # Newest first, like GitHub.
        items = [self.resources.deployment(repo, d) for d in reversed(repo.deployments) if keep(d)]
        return self._page(items, query, f"/repos/{repo.full_name}/deployments")

    def _create_deployment(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        ref = body["ref"]
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else hashlib.sha1(ref.encode()).hexdigest()
        environment = body.get("environment", "production")
        deployment = Deployment(
            id=self._ids.next(),
            sha=sha,
            ref=ref,
            task=body.get("task", "deploy"),
            environment=environment,
            description=body.get("description", ""),
            payload=_payload(body.get("payload", {})),
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", environment == "production"),
        )
        repo.deployments.append(deployment)
        return 201, self.resources.deployment(repo, deployment), {}

    def _get_deployment(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        deployment = repo.deployment(int(params["deployment_id"]))
        if deployment is None:
            return 404, Resources.error("Not Found", 404), {}
        return 200, self.resources.deployment(repo, deployment), {}

    def _list_statuses(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        deployment = repo.deployment(int(params["deployment_id"]))
        if deployment is None:
            return 404, Resources.error("Not Found", 404), {}
        items = [self.resources.deployment_status(repo, deployment, s) for s in reversed(deployment.statuses)]
        return self._page(items, query, f"/repos/{repo.full_name}/deployments/{deployment.id}/statuses")

    def _create_status(self, repo: Repository, params: dict[str, str], query: Any, body: Any) -> Result:
        deployment = repo.deployment(int(params["deployment_id"]))
        if deployment is None:
            return 422, Resources.error("Validation Failed", 422) | {"errors": []}, {}
        status = self._add_status(deployment, body)
        if status.state == "success" and body.get("auto_inactive", True):
            self._auto_inactivate(repo, deployment)
        return 201, self.resources.deployment_status(repo, deployment, status), {}

    def _add_status(self, deployment: Deployment, body: dict[str, Any]) -> DeploymentStatus:
        status = DeploymentStatus(
            id=self._ids.next(),
            state=body["state"],
            description=body.get("description", ""),
            environment=body.get("environment", deployment.environment),
            environment_url=body.get("environment_url", ""),
            log_url=body.get("log_url", ""),
            target_url=body.get("target_url", ""),
        )
        deployment.statuses.append(status)
        return status

    def _auto_inactivate(self, repo: Repository, current: Deployment) -> None:
        # GitHub's documented `auto_inactive`: prior successful deployments to the same environment that
        # are neither transient nor production get an `inactive` status.
        for older in repo.deployments:
            if (
                older.id != current.id
                and older.environment == current.environment
                and not older.transient_environment
                and not older.production_environment
                and older.state == "success"
            ):
                self._add_status(older, {"state": "inactive"})

    def _page(self, items: list[Any], query: dict[str, list[str]], path: str) -> Result:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = max(int(query.get("page", ["1"])[0]), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        if page < last:
            for rel, number in (("next", page + 1), ("last", last)):
                links.append(
                    f'<{self.url}{path}?{urlencode({"per_page": per_page, "page": number})}>; rel="{rel}"'
                )
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, items[(page - 1) * per_page : page * per_page], headers


def _payload(value: Any) -> Any:
    # GitHub stores a string payload as the JSON it contains.
    if isinstance(value, str):
        try:
            return json.loads(value) if value else {}
        except ValueError:
            return value
    return value


def _handler_for(server: GitHubAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; without this, delayed ACKs add ~40 ms per request.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else None
            status, data, headers = server.handle(self.command, self.path, dict(self.headers.items()), raw)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

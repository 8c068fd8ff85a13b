"""A stand-in for the git hosts' commit-status APIs and for notification receivers.

One threaded HTTP server on 127.0.0.1 (a random port) serves, by path prefix:

- `/github/...`  GitHub's `POST {prefix}/repos/{owner}/{repo}/statuses/{sha}`
- `/gitea/...`   Gitea/Forgejo's `POST {prefix}/api/v1/repos/{owner}/{repo}/statuses/{sha}`
- `/gitlab/...`  GitLab's `POST {prefix}/api/v4/projects/{id}/statuses/{sha}`
- `/notify`      a generic webhook receiver that checks `X-Hooksvc-Signature-256`
- `/slack/...`   a Slack-compatible incoming webhook (the path is the secret)

Every request is checked against the hosts' documented status APIs (GitHub's REST commit statuses,
Gitea's `/api/v1` and GitLab's `/api/v4`): a bad credential gets 401, any other breach 422, and
each is recorded in `violations`.
Accepted statuses are recorded per (host kind, sha, context), in arrival order.
`fail_next` and `hang_next` make the next requests of one route answer an error or hang longer
than the client's timeout; a hung request is not recorded as accepted (the host never got to it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

GITHUB_STATES = frozenset({"error", "failure", "pending", "success"})
GITEA_STATES = frozenset({"pending", "success", "error", "failure", "warning"})
GITLAB_STATES = frozenset({"pending", "running", "success", "failed", "canceled", "skipped"})
GITHUB_DESCRIPTION_LIMIT = 140
GITLAB_FIELD_LIMIT = 255

_SHA = r"(?P<sha>[0-9a-f]{40}|[0-9a-f]{64})"
_GITHUB_PATH = re.compile(rf"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/statuses/{_SHA}$")
_GITEA_PATH = re.compile(rf"^/gitea(?:/[^?]*)?/api/v1/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/statuses/{_SHA}$")
_GITLAB_PATH = re.compile(rf"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<id>[^/?]+)/statuses/{_SHA}$")


@dataclass(frozen=True)
class AcceptedStatus:
    kind: str
    repo: str
    sha: str
    context: str
    state: str
    description: str
    target_url: str | None
    ref: str | None
    headers: dict[str, str]


@dataclass(frozen=True)
class Notification:
    kind: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class _Breach(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Fault:
    status: int | None  # None: hang


@dataclass
class _State:
    statuses: dict[tuple[str, str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    accepted: list[AcceptedStatus] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    faults: dict[str, deque[_Fault]] = field(default_factory=lambda: defaultdict(deque))
    faults_served: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class FakeGitHost:
    """The fake server. Use as a context manager; `url` is its base, e.g. `http://127.0.0.1:40123`."""

    def __init__(
        self,
        tokens: dict[str, str],
        notify_secret: str = "",
        slack_path: str = "/slack/T000/B000/slack-secret-path",
        hang_seconds: float = 1.0,
    ) -> None:
        self.tokens = tokens  # host kind ("github", "gitea", "gitlab") -> the token it accepts
        self.notify_secret = notify_secret
        self.slack_path = slack_path
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._state = _State()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for one poll, and every test shuts a server down.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-git-host", daemon=True,
        )

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- controls and records ----------------------------------------------------------------

    def fail_next(self, route: str, times: int, status: int = 500) -> None:
        """The next `times` requests to `route` (github, gitea, gitlab, notify, slack) answer `status`."""
        with self._lock:
            self._state.faults[route].extend(_Fault(status) for _ in range(times))

    def hang_next(self, route: str, times: int) -> None:
        """The next `times` requests to `route` get no answer for `hang_seconds`."""
        with self._lock:
            self._state.faults[route].extend(_Fault(None) for _ in range(times))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def statuses(self, kind: str, sha: str, context: str) -> list[str]:
        """The states accepted for one commit and context, in arrival order."""
        with self._lock:
            return list(self._state.statuses.get((kind, sha, context), []))

    @property
    def accepted(self) -> list[AcceptedStatus]:
        with self._lock:
            return list(self._state.accepted)

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._state.notifications)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._state.violations)

    def faults_served(self, route: str) -> int:
        with self._lock:
            return self._state.faults_served[route]

    # -- the contracts -----------------------------------------------------------------------

    def _take_fault(self, route: str) -> _Fault | None:
        with self._lock:
            queue = self._state.faults.get(route)
            if not queue:
                return None
            self._state.faults_served[route] += 1
            return queue.popleft()

    def _check_json(self, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        if not headers.get("content-type", "").startswith("application/json"):
            raise _Breach(422, f"content type must be application/json, got {headers.get('content-type')!r}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Breach(422, "body is not JSON") from None
        if not isinstance(body, dict):
            raise _Breach(422, "body is not a JSON object")
        return body

    def _check_keys(self, body: dict[str, Any], allowed: set[str]) -> None:
        unknown = set(body) - allowed
        if unknown:
            raise _Breach(422, f"unknown fields {sorted(unknown)}")

    def _check_text(self, body: dict[str, Any], key: str, limit: int | None, required: bool = False) -> str | None:
        if key not in body:
            if required:
                raise _Breach(422, f"{key} is required")
            return None
        value = body[key]
        if not isinstance(value, str):
            raise _Breach(422, f"{key} must be a string, got {value!r}")
        if limit is not None and len(value) > limit:
            raise _Breach(422, f"{key} is too long (maximum is {limit} characters)")
        return value

    def _check_target_url(self, body: dict[str, Any], limit: int | None) -> str | None:
        url = self._check_text(body, "target_url", limit)
        if url is not None and not url.startswith(("http://", "https://")):
            raise _Breach(422, f"target_url must be an http(s) URL, got {url!r}")
        return url

    def _github(self, m: re.Match[str], headers: dict[str, str], raw: bytes) -> AcceptedStatus:
        token = self.tokens["github"]
        if headers.get("authorization") not in (f"Bearer {token}", f"token {token}"):
            raise _Breach(401, "Bad credentials")
        if headers.get("accept") != "application/vnd.github+json":
            raise _Breach(422, f"Accept must be application/vnd.github+json, got {headers.get('accept')!r}")
        if not headers.get("user-agent"):
            raise _Breach(422, "GitHub requires a User-Agent header")
        body = self._check_json(headers, raw)
        self._check_keys(body, {"state", "target_url", "description", "context"})
        if body.get("state") not in GITHUB_STATES:
            raise _Breach(422, f"state must be one of {sorted(GITHUB_STATES)}, got {body.get('state')!r}")
        description = self._check_text(body, "description", GITHUB_DESCRIPTION_LIMIT) or ""
        context = self._check_text(body, "context", None) or "default"
        return AcceptedStatus("github", f"{m['owner']}/{m['repo']}", m["sha"], context, body["state"],
                              description, self._check_target_url(body, None), None, headers)

    def _gitea(self, m: re.Match[str], headers: dict[str, str], raw: bytes) -> AcceptedStatus:
        token = self.tokens["gitea"]
        auth = headers.get("authorization", "")
        if auth not in (f"token {token}", f"bearer {token}", f"Bearer {token}"):
            raise _Breach(401, "token is required")
        body = self._check_json(headers, raw)
        self._check_keys(body, {"state", "target_url", "description", "context"})
        if body.get("state") not in GITEA_STATES:
            raise _Breach(422, f"state must be one of {sorted(GITEA_STATES)}, got {body.get('state')!r}")
        description = self._check_text(body, "description", None) or ""
        context = self._check_text(body, "context", None) or "default"
        return AcceptedStatus("gitea", f"{m['owner']}/{m['repo']}", m["sha"], context, body["state"],
                              description, self._check_target_url(body, None), None, headers)

    def _gitlab(self, m: re.Match[str], headers: dict[str, str], raw: bytes) -> AcceptedStatus:
        token = self.tokens["gitlab"]
        if headers.get("private-token") != token and headers.get("authorization") != f"Bearer {token}":
            raise _Breach(401, "401 Unauthorized")
        project = m["id"]
        if not project.isdigit() and "%2f" not in project.lower():
            raise _Breach(422, f"project id must be numeric or a URL-encoded path, got {project!r}")
        body = self._check_json(headers, raw)
        self._check_keys(body, {"state", "ref", "name", "context", "target_url", "description", "coverage",
                                "pipeline_id"})
        if body.get("state") not in GITLAB_STATES:
            raise _Breach(422, f"state must be one of {sorted(GITLAB_STATES)}, got {body.get('state')!r}")
        description = self._check_text(body, "description", GITLAB_FIELD_LIMIT) or ""
        ref = self._check_text(body, "ref", GITLAB_FIELD_LIMIT)
        name = self._check_text(body, "name", None) or self._check_text(body, "context", None) or "default"
        return AcceptedStatus("gitlab", unquote(project), m["sha"], name, body["state"], description,
                              self._check_target_url(body, GITLAB_FIELD_LIMIT), ref, headers)

    def _notify(self, headers: dict[str, str], raw: bytes) -> None:
        signature = headers.get("x-hooksvc-signature-256", "")
        expected = "sha256=" + hmac.new(self.notify_secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise _Breach(401, "bad signature")
        if headers.get("x-hooksvc-event") != "deployment":
            raise _Breach(422, f"X-Hooksvc-Event must be 'deployment', got {headers.get('x-hooksvc-event')!r}")
        body = self._check_json(headers, raw)
        missing = {"app", "deployment_id", "sha", "state", "error", "url"} - set(body)
        if missing:
            raise _Breach(422, f"missing fields {sorted(missing)}")

    def _slack(self, headers: dict[str, str], raw: bytes) -> None:
        body = self._check_json(headers, raw)
        if set(body) != {"text"} or not isinstance(body["text"], str) or not body["text"]:
            raise _Breach(422, "invalid_payload: expected {\"text\": \"...\"}")

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        """Check one POST and record it; returns the status code and JSON answer."""
        route = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        checks = {"github": _GITHUB_PATH, "gitea": _GITEA_PATH, "gitlab": _GITLAB_PATH}
        if route in checks:
            m = checks[route].match(path)
            if m is None:
                raise _Breach(404, f"no such endpoint {path!r}")
            accepted = getattr(self, f"_{route}")(m, headers, raw)
            with self._lock:
                self._state.accepted.append(accepted)
                self._state.statuses[(route, accepted.sha, accepted.context)].append(accepted.state)
            field_name = "state" if route == "github" else "status"
            return 201, {field_name: accepted.state, "context": accepted.context}
        if route == "notify" and path == "/notify":
            self._notify(headers, raw)
        elif route == "slack" and path == self.slack_path:
            self._slack(headers, raw)
        else:
            raise _Breach(404, f"no such endpoint {path!r}")
        with self._lock:
            self._state.notifications.append(Notification(route, path, headers, raw))
        return 200, {"ok": True}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (it timed out on a hung request)

            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                route = self.path.split("/", 2)[1] if self.path.count("/") >= 1 else ""
                fault = fake._take_fault(route)
                if fault is not None:
                    if fault.status is None:
                        fake._closing.wait(fake.hang_seconds)
                        self.close_connection = True
                        self._answer(504, {"message": "hung"})
                    else:
                        self._answer(fault.status, {"message": f"injected {fault.status}"})
                    return
                try:
                    status, body = fake._handle(self.path, headers, raw)
                except _Breach as breach:
                    with fake._lock:
                        fake._state.violations.append(f"{self.path}: {breach.message}")
                    status, body = breach.status, {"message": breach.message}
                self._answer(status, body)

            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                with fake._lock:
                    fake._state.violations.append(f"GET {self.path}: status APIs are POST")
                self._answer(405, {"message": "method not allowed"})

        return Handler

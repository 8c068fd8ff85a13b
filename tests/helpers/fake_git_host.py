"""A stand-in for the git hosts' commit-status APIs and for notification receivers.

One threaded HTTP server on 127.0.0.1 (a random port) serves, by path prefix:

- `/github/...`  GitHub's `POST {prefix}/repos/{owner}/{repo}/statuses/{sha}`
- `/gitea/...`   Gitea/Forgejo's `POST {prefix}/api/v1/repos/{owner}/{repo}/statuses/{sha}`
- `/gitlab/...`  GitLab's `POST {prefix}/api/v4/projects/{id}/statuses/{sha}`
- `/bitbucket/...` Bitbucket Cloud's
  `POST {prefix}/2.0/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build`
- `/bitbucket-server/...` Bitbucket Data Center's
  `POST {prefix}/rest/api/latest/projects/{projectKey}/repos/{slug}/commits/{sha}/builds` (answers 204)
- `/notify`      a generic webhook receiver that checks `X-Hooksvc-Signature-256`
- `/slack/...`   a Slack-compatible incoming webhook (the path is the secret)

and the deployments APIs (docs/contract.md, "Deployments on the git host"):

- GitHub's `POST {prefix}/repos/{owner}/{repo}/deployments` and `.../deployments/{id}/statuses`
- GitLab's `POST {prefix}/api/v4/projects/{id}/deployments` and `PUT .../deployments/{deployment_id}`

and the APIs a pull request's preview is reported through (docs/previews.md):

- GitHub's issue comments: `GET|POST {prefix}/repos/{owner}/{repo}/issues/{number}/comments`,
  `PATCH .../issues/comments/{comment_id}`; Gitea/Forgejo's the same under `/api/v1` (its list
  takes no paging); GitLab's merge request notes: `GET|POST {prefix}/api/v4/projects/{id}/
  merge_requests/{iid}/notes`, `PUT .../notes/{note_id}`
- GitLab's environments: `GET {prefix}/api/v4/projects/{id}/environments?name=...`, `POST` there,
  `PUT .../environments/{id}`, `POST .../environments/{id}/stop`

each checked for the host's credential, required fields, types, allowed states, unknown fields and
length limits (and, for reads, the documented query parameters), answered like the host (201 with
the new object and its `id`; GitLab's PUT 200; 404 for a deployment or comment it does not have,
403 for an edit of another user's comment; GitHub's 409 when a required commit status is not
`success`; GitLab's 400 for a bad parameter or a taken environment name), and applying GitHub's
`auto_inactive` (a `success` marks the environment's earlier successful, non-production,
non-transient deployments inactive).

The CI check read APIs (docs/gating.md) answer from what a test set with `set_check_runs`,
`set_commit_statuses` and `set_pipelines`, plus the statuses hooksvc itself posted, each read
checked for the host's credential and the documented query parameters and their values:

- GitHub's `GET {prefix}/repos/{owner}/{repo}/commits/{sha}/check-runs` and `.../commits/{sha}/status`
- Gitea/Forgejo's `GET {prefix}/api/v1/repos/{owner}/{repo}/commits/{sha}/status`
- GitLab's `GET {prefix}/api/v4/projects/{id}/pipelines?sha=...`

Every request is checked against the hosts' documented status APIs (GitHub's REST commit statuses,
Gitea's `/api/v1`, GitLab's `/api/v4`, Bitbucket Cloud's commit statuses and Data Center's build
status API, each with its required fields and states): a bad credential gets 401, any other breach
422, and each is recorded in `violations`.
Accepted statuses are recorded per (host kind, sha, context), in arrival order.

With a `FakeGitHubApp`, the GitHub routes stand in for a GitHub App installation instead of a
personal token: `POST {prefix}/app/installations/{id}/access_tokens` and
`GET {prefix}/repos/{owner}/{repo}/installation` take a JWT, checked like GitHub does (RS256 signature
against the App's public key, `iss` the App id, `iat` not in the future, `exp` in the future and at
most 10 minutes after `iat`); the first hands out installation tokens that expire after
`token_seconds`, and every other GitHub route then accepts only an unexpired one (401 otherwise;
`expire_app_tokens` makes the tokens handed out so far lapse at once). Check runs
(`POST .../check-runs`, `PATCH .../check-runs/{id}`) need an installation token, as on GitHub.
`fail_next` and `hang_next` make the next requests of one route answer an error or hang longer
than the client's timeout; a hung request is not recorded as accepted (the host never got to it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

GITHUB_STATES = frozenset({"error", "failure", "pending", "success"})
GITEA_STATES = frozenset({"pending", "success", "error", "failure", "warning"})
GITLAB_STATES = frozenset({"pending", "running", "success", "failed", "canceled", "skipped"})
#: Bitbucket Cloud (api-group-commit-statuses) and Data Center (updating-build-status-for-commits).
BITBUCKET_STATES = frozenset({"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"})
BITBUCKET_SERVER_STATES = frozenset({"INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"})
GITHUB_DESCRIPTION_LIMIT = 140
GITLAB_FIELD_LIMIT = 255
GITHUB_DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
GITLAB_DEPLOYMENT_STATUSES = frozenset({"running", "success", "failed", "canceled"})

_SHA = r"(?P<sha>[0-9a-f]{40}|[0-9a-f]{64})"
_GITHUB_PATH = re.compile(rf"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/statuses/{_SHA}$")
_GITEA_PATH = re.compile(rf"^/gitea(?:/[^?]*)?/api/v1/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/statuses/{_SHA}$")
_GITLAB_PATH = re.compile(rf"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<id>[^/?]+)/statuses/{_SHA}$")
_BITBUCKET_PATH = re.compile(
    rf"^/bitbucket(?:/[^?]*)?/2\.0/repositories/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/commit/{_SHA}/statuses/build/?$")
_BITBUCKET_SERVER_PATH = re.compile(
    rf"^/bitbucket-server(?:/[^?]*)?/rest/api/latest/projects/(?P<owner>[^/?]+)/repos/(?P<repo>[^/?]+)"
    rf"/commits/{_SHA}/builds$")
_GITHUB_DEPLOYMENTS = re.compile(
    r"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/deployments(?:/(?P<id>[^/?]+)/statuses)?$")
_GITHUB_CHECK_READS = re.compile(
    rf"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/commits/{_SHA}/(?P<what>check-runs|status)$")
_GITEA_STATUS_READ = re.compile(
    rf"^/gitea(?:/[^?]*)?/api/v1/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/commits/{_SHA}/status$")
_GITLAB_PIPELINES = re.compile(r"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<project>[^/?]+)/pipelines$")
#: The query parameters each read API documents, and the values of those with a closed set.
GITHUB_CHECK_RUNS_QUERY = {"check_name": None, "status": {"queued", "in_progress", "completed"},
                           "filter": {"latest", "all"}, "per_page": None, "page": None, "app_id": None}
GITHUB_STATUS_QUERY = {"per_page": None, "page": None}
GITEA_STATUS_QUERY = {"page": None, "limit": None}
GITLAB_PIPELINES_QUERY = {"scope": None, "status": None, "source": None, "ref": None, "sha": None, "yaml_errors": None,
                          "username": None, "updated_after": None, "updated_before": None, "name": None,
                          "order_by": {"id", "status", "ref", "updated_at", "user_id"}, "sort": {"asc", "desc"},
                          "per_page": None, "page": None, "created_after": None, "created_before": None}
GITHUB_CHECK_STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested", "pending"})
GITHUB_CONCLUSIONS = frozenset({"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                                "timed_out", None})
GITLAB_PIPELINE_STATUSES = frozenset({"created", "waiting_for_resource", "preparing", "pending", "running", "success",
                                      "failed", "canceled", "skipped", "manual", "scheduled"})
_GITLAB_DEPLOYMENTS = re.compile(
    r"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<project>[^/?]+)/deployments(?:/(?P<id>[^/?]+))?$")
#: Pull request comments: `number` names the pull request (list, create), `id` the comment (edit).
_GITHUB_COMMENTS = re.compile(
    r"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/issues/"
    r"(?:(?P<number>\d+)/comments|comments/(?P<id>[^/?]+))$")
_GITEA_COMMENTS = re.compile(
    r"^/gitea(?:/[^?]*)?/api/v1/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/issues/"
    r"(?:(?P<number>\d+)/comments|comments/(?P<id>[^/?]+))$")
_GITLAB_NOTES = re.compile(
    r"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<project>[^/?]+)/merge_requests/(?P<number>\d+)/notes"
    r"(?:/(?P<id>[^/?]+))?$")
_GITLAB_ENVIRONMENTS = re.compile(
    r"^/gitlab(?:/[^?]*)?/api/v4/projects/(?P<project>[^/?]+)/environments(?:/(?P<id>[^/?]+)(?:/(?P<action>stop))?)?$")
#: The query parameters of each list, and the values of those with a closed set.
GITHUB_COMMENTS_QUERY: dict[str, set[str] | None] = {"since": None, "per_page": None, "page": None}
GITEA_COMMENTS_QUERY: dict[str, set[str] | None] = {"since": None, "before": None}
GITLAB_NOTES_QUERY: dict[str, set[str] | None] = {
    "sort": {"asc", "desc"}, "order_by": {"created_at", "updated_at"}, "page": None, "per_page": None}
GITLAB_ENVIRONMENTS_QUERY: dict[str, set[str] | None] = {
    "name": None, "search": None, "states": {"available", "stopping", "stopped"}, "page": None, "per_page": None}
GITLAB_TIERS = frozenset({"production", "staging", "testing", "development", "other"})
#: GitHub refuses a comment body longer than this; GitLab's note limit is larger (1 000 000).
GITHUB_COMMENT_LIMIT = 65536


_GITHUB_APP_TOKENS = re.compile(r"^/github(?:/[^?]*)?/app/installations/(?P<id>[^/?]+)/access_tokens$")
_GITHUB_INSTALLATION = re.compile(r"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/installation$")
_GITHUB_CHECK_RUNS = re.compile(
    r"^/github(?:/[^?]*)?/repos/(?P<owner>[^/?]+)/(?P<repo>[^/?]+)/check-runs(?:/(?P<id>[^/?]+))?$")
CHECK_RUN_STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested", "pending"})
CHECK_RUN_CONCLUSIONS = frozenset({"action_required", "cancelled", "failure", "neutral", "success", "skipped",
                                   "stale", "timed_out"})
#: GitHub refuses a JWT whose `exp` is more than 10 minutes after its `iat`.
JWT_MAX_SECONDS = 600


@dataclass(frozen=True)
class FakeGitHubApp:
    """The App the fake GitHub stands in for: its id, its public key, and where it is installed."""

    app_id: int
    public_key: RSAPublicKey
    installation_id: int
    #: Repositories (`owner/name`) the installation covers.
    repos: frozenset[str]
    #: How long a handed-out installation token lives (GitHub: one hour).
    token_seconds: float = 3600.0


@dataclass
class CheckRun:
    """A check run as the fake GitHub keeps it: what created it and every update since."""

    id: int
    repo: str
    head_sha: str
    name: str
    created: dict[str, Any]
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        for body in reversed([self.created, *self.updates]):
            if "status" in body:
                return str(body["status"])
        return "queued"

    @property
    def conclusion(self) -> str | None:
        for body in reversed([self.created, *self.updates]):
            if "conclusion" in body:
                return str(body["conclusion"])
        return None

    @property
    def latest(self) -> dict[str, Any]:
        return self.updates[-1] if self.updates else self.created


@dataclass
class HostDeployment:
    """A deployment as the fake host keeps it: what created it and every status since, in order."""

    kind: str
    id: int
    repo: str
    sha: str
    ref: str
    environment: str
    created: dict[str, Any]
    statuses: list[str] = field(default_factory=list)
    #: The body of each status request (GitHub) or update (GitLab), in order.
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.statuses[-1] if self.statuses else ""


@dataclass
class Comment:
    """A pull request comment (GitLab: a merge request note) as the fake host keeps it."""

    kind: str
    id: int
    repo: str
    number: int
    body: str
    #: Who wrote it: "hooksvc" for the token's requests, else what `add_comment` said.
    author: str
    #: Every body it had before the current one, oldest first.
    edits: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Environment:
    """A GitLab environment as the fake host keeps it."""

    id: int
    repo: str
    name: str
    external_url: str | None
    tier: str
    state: str = "available"


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
    deployments: list[HostDeployment] = field(default_factory=list)
    #: Installation token -> when it expires (epoch seconds); JWT claims verified, in order.
    app_tokens: dict[str, float] = field(default_factory=dict)
    jwt_claims: list[dict[str, Any]] = field(default_factory=list)
    refused_tokens: int = 0
    check_runs: list[CheckRun] = field(default_factory=list)
    #: (repo, sha) -> GitHub check runs; (kind, repo, sha) -> commit statuses CI posted; (repo, sha) -> pipelines.
    ci_check_runs: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    commit_statuses: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    pipelines: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    #: Check reads served, by host kind.
    check_reads: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    comments: list[Comment] = field(default_factory=list)
    environments: list[Environment] = field(default_factory=list)
    #: (method, path) of every comment and environment request served, in order.
    comment_requests: list[tuple[str, str]] = field(default_factory=list)


class FakeGitHost:
    """The fake server. Use as a context manager; `url` is its base, e.g. `http://127.0.0.1:40123`."""

    def __init__(
        self,
        tokens: dict[str, str],
        notify_secret: str = "",
        slack_path: str = "/slack/T000/B000/slack-secret-path",
        hang_seconds: float = 1.0,
        github_app: FakeGitHubApp | None = None,
    ) -> None:
        self.tokens = tokens  # host kind ("github", "gitea", "bitbucket", ...) -> the token it accepts
        self.github_app = github_app
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
        """The next `times` requests to `route` (github, gitea, gitlab, notify, slack; github-deployments,
        gitlab-deployments for the deployments API alone, GitLab's environments included;
        github-comments, gitea-comments, gitlab-comments for pull request comments alone) answer `status`."""
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

    def deployments(self, kind: str) -> list[HostDeployment]:
        """The deployments created on one host kind, oldest first (copies)."""
        with self._lock:
            return [HostDeployment(d.kind, d.id, d.repo, d.sha, d.ref, d.environment, dict(d.created),
                                   list(d.statuses), list(d.updates))
                    for d in self._state.deployments if d.kind == kind]

    def comments(self, kind: str, repo: str, number: int) -> list[Comment]:
        """The comments of one pull request, oldest first (copies)."""
        with self._lock:
            return [Comment(c.kind, c.id, c.repo, c.number, c.body, c.author, list(c.edits), dict(c.headers))
                    for c in self._state.comments if (c.kind, c.repo, c.number) == (kind, repo, number)]

    def add_comment(self, kind: str, repo: str, number: int, body: str, author: str = "reviewer") -> int:
        """A comment someone else wrote on the pull request; its id."""
        with self._lock:
            comment = Comment(kind, 9001 + len(self._state.comments), repo, number, body, author)
            self._state.comments.append(comment)
            return comment.id

    def delete_comment(self, comment_id: int) -> None:
        """Someone deleted the comment: editing it answers 404 from now on."""
        with self._lock:
            self._state.comments = [c for c in self._state.comments if c.id != comment_id]

    def environments(self) -> list[Environment]:
        """GitLab's environments, oldest first (copies)."""
        with self._lock:
            return [Environment(e.id, e.repo, e.name, e.external_url, e.tier, e.state)
                    for e in self._state.environments]

    @property
    def comment_requests(self) -> list[tuple[str, str]]:
        """(method, path) of every comment and environment request served, in order."""
        with self._lock:
            return list(self._state.comment_requests)

    def expire_app_tokens(self) -> None:
        """Every installation token handed out so far lapses now (hooksvc's cache does not know)."""
        with self._lock:
            self._state.app_tokens = dict.fromkeys(self._state.app_tokens, 0.0)

    def accepts_installation_token(self, token: str) -> bool:
        """True for an installation token this fake handed out and that has not expired."""
        with self._lock:
            return self._state.app_tokens.get(token, 0.0) > time.time()

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._state.app_tokens)

    @property
    def jwt_claims(self) -> list[dict[str, Any]]:
        """The claims of every App JWT the fake verified, in order."""
        with self._lock:
            return [dict(c) for c in self._state.jwt_claims]

    @property
    def refused_tokens(self) -> int:
        """How many requests came with an expired or unknown installation token."""
        with self._lock:
            return self._state.refused_tokens

    def check_runs(self) -> list[CheckRun]:
        """The check runs created, oldest first (copies)."""
        with self._lock:
            return [CheckRun(c.id, c.repo, c.head_sha, c.name, dict(c.created), list(c.updates))
                    for c in self._state.check_runs]

    def set_check_runs(self, repo: str, sha: str, runs: list[dict[str, Any]]) -> None:
        """What GitHub's Checks API lists for the commit: each `{"name", "status", "conclusion"}`."""
        for run in runs:
            assert run["status"] in GITHUB_CHECK_STATUSES and run.get("conclusion") in GITHUB_CONCLUSIONS, run
        with self._lock:
            self._state.ci_check_runs[(repo, sha)] = [
                {"id": 4000 + i, "head_sha": sha, "html_url": f"https://github.com/{repo}/runs/{4000 + i}",
                 "conclusion": None, **run} for i, run in enumerate(runs)]

    def set_commit_statuses(self, kind: str, repo: str, sha: str, statuses: list[dict[str, Any]]) -> None:
        """The commit statuses CI posted (`{"context", "state", "target_url"}`), newest first, beside hooksvc's own."""
        states = GITHUB_STATES if kind == "github" else GITEA_STATES
        assert all(s["state"] in states for s in statuses), statuses
        with self._lock:
            self._state.commit_statuses[(kind, repo, sha)] = list(statuses)

    def set_pipelines(self, repo: str, sha: str, pipelines: list[dict[str, Any]]) -> None:
        """GitLab's pipelines of the commit: each `{"id", "status"}` and optionally `name`."""
        assert all(p["status"] in GITLAB_PIPELINE_STATUSES for p in pipelines), pipelines
        with self._lock:
            self._state.pipelines[(repo, sha)] = [
                {"sha": sha, "ref": "main", "source": "push", "web_url": f"https://gitlab.example.com/{repo}/-/pipelines/"
                 f"{p['id']}", **p} for p in pipelines]

    def check_reads(self, kind: str) -> int:
        """How many check reads of one host kind were served."""
        with self._lock:
            return self._state.check_reads[kind]

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
        self._check_github_headers(headers)
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
        self._check_gitlab_token(headers)
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

    def _bitbucket(self, m: re.Match[str], headers: dict[str, str], raw: bytes) -> AcceptedStatus:
        return self._bitbucket_build("bitbucket", m, headers, raw, BITBUCKET_STATES, "refname",
                                     {"key", "state", "url", "name", "description", "refname"})

    def _bitbucket_server(self, m: re.Match[str], headers: dict[str, str], raw: bytes) -> AcceptedStatus:
        return self._bitbucket_build("bitbucket-server", m, headers, raw, BITBUCKET_SERVER_STATES, "ref",
                                     {"key", "state", "url", "name", "description", "ref", "buildNumber",
                                      "duration", "lastUpdated", "parent", "testResults"})

    def _bitbucket_build(self, kind: str, m: re.Match[str], headers: dict[str, str], raw: bytes,
                         states: frozenset[str], ref_key: str, allowed: set[str]) -> AcceptedStatus:
        """Both Bitbucket APIs: a bearer token; `key`, `state` and `url` required; the host's states only."""
        if headers.get("authorization") != f"Bearer {self.tokens[kind]}":
            raise _Breach(401, "Authentication failed")
        body = self._check_json(headers, raw)
        self._check_keys(body, allowed)
        key = self._check_text(body, "key", None, required=True)
        if body.get("state") not in states:
            raise _Breach(422, f"state must be one of {sorted(states)}, got {body.get('state')!r}")
        url = self._check_text(body, "url", None, required=True) or ""
        if not url.startswith(("http://", "https://")):
            raise _Breach(422, f"url must be an http(s) URL, got {url!r}")
        description = self._check_text(body, "description", None) or ""
        self._check_text(body, "name", None)
        return AcceptedStatus(kind, f"{m['owner']}/{m['repo']}", m["sha"], key or "", body["state"], description,
                              url, self._check_text(body, ref_key, None), headers)

    def _check_github_headers(self, headers: dict[str, str]) -> None:
        if self.github_app is not None:
            auth = headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not self.accepts_installation_token(auth[len("Bearer "):]):
                with self._lock:
                    self._state.refused_tokens += 1
                raise _Breach(401, "Bad credentials")
        else:
            token = self.tokens["github"]
            if headers.get("authorization") not in (f"Bearer {token}", f"token {token}"):
                raise _Breach(401, "Bad credentials")
        if headers.get("accept") != "application/vnd.github+json":
            raise _Breach(422, f"Accept must be application/vnd.github+json, got {headers.get('accept')!r}")
        if not headers.get("user-agent"):
            raise _Breach(422, "GitHub requires a User-Agent header")

    def _check_gitlab_token(self, headers: dict[str, str]) -> None:
        token = self.tokens["gitlab"]
        if headers.get("private-token") != token and headers.get("authorization") != f"Bearer {token}":
            raise _Breach(401, "401 Unauthorized")

    def _check_type(self, body: dict[str, Any], key: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
        if key not in body:
            if required:
                raise _Breach(422, f"{key} is required")
            return None
        value = body[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise _Breach(422, f"{key} has the wrong type: {value!r}")
        return value

    def _check_url(self, body: dict[str, Any], key: str) -> None:
        url = self._check_text(body, key, None)
        if url is not None and not url.startswith(("http://", "https://")):
            raise _Breach(422, f"{key} must be an http(s) URL, got {url!r}")

    def _find_deployment(self, kind: str, repo: str, raw_id: str) -> HostDeployment:
        with self._lock:
            for d in self._state.deployments:
                if d.kind == kind and str(d.id) == raw_id and d.repo == repo:
                    return d
        raise _Breach(404, "Not Found")

    def _github_deployments(self, m: re.Match[str], method: str, headers: dict[str, str],
                            raw: bytes) -> tuple[int, dict[str, Any]]:
        self._check_github_headers(headers)
        if method != "POST":
            raise _Breach(404, "Not Found")
        repo = f"{m['owner']}/{m['repo']}"
        body = self._check_json(headers, raw)
        if m["id"] is None:
            return self._github_create_deployment(repo, body)
        deployment = self._find_deployment("github", repo, m["id"])
        self._check_keys(body, {"state", "target_url", "log_url", "description", "environment", "environment_url",
                                "auto_inactive"})
        state = body.get("state")
        if state not in GITHUB_DEPLOYMENT_STATES:
            raise _Breach(422, f"state must be one of {sorted(GITHUB_DEPLOYMENT_STATES)}, got {state!r}")
        self._check_text(body, "description", GITHUB_DESCRIPTION_LIMIT)
        self._check_text(body, "environment", None)
        for key in ("target_url", "log_url", "environment_url"):
            self._check_url(body, key)
        auto_inactive = self._check_type(body, "auto_inactive", bool)
        with self._lock:
            deployment.statuses.append(state)
            deployment.updates.append(body)
            if state == "success" and auto_inactive is not False:
                self._auto_inactivate(deployment)
            status_id = sum(len(d.statuses) for d in self._state.deployments)
        return 201, {"id": status_id, "state": state, "description": body.get("description", ""),
                     "environment": deployment.environment}

    def _auto_inactivate(self, current: HostDeployment) -> None:
        """GitHub's `auto_inactive`: earlier successful deployments of the environment become inactive,
        unless the environment is a production one (or they were transient)."""
        for d in self._state.deployments:
            production = d.created.get("production_environment", d.environment == "production")
            if (d is not current and d.kind == current.kind and d.repo == current.repo
                    and d.environment == current.environment and d.id < current.id and not production
                    and not d.created.get("transient_environment") and "success" in d.statuses
                    and d.state != "inactive"):
                d.statuses.append("inactive")
                d.updates.append({"state": "inactive", "auto_inactive_by": current.id})

    def _github_create_deployment(self, repo: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._check_keys(body, {"ref", "task", "auto_merge", "required_contexts", "payload", "environment",
                                "description", "transient_environment", "production_environment"})
        ref = self._check_text(body, "ref", None, required=True) or ""
        if not ref:
            raise _Breach(422, "ref is required")
        self._check_text(body, "task", None)
        self._check_text(body, "environment", None)
        self._check_text(body, "description", None)
        for key in ("auto_merge", "transient_environment", "production_environment"):
            self._check_type(body, key, bool)
        self._check_type(body, "payload", (dict, str))
        contexts = self._check_type(body, "required_contexts", list)
        if contexts is not None and not all(isinstance(c, str) for c in contexts):
            raise _Breach(422, "required_contexts must be a list of strings")
        # By default every commit status context of the ref must be `success` (GitHub answers 409).
        with self._lock:
            latest = {a.context: a.state for a in self._state.accepted if a.kind == "github" and a.sha == ref}
        unmet = sorted(c for c, state in latest.items() if state != "success") if contexts is None else []
        if unmet:
            raise _Breach(409, f"Conflict: Commit status checks failed for {ref}: {unmet}")
        with self._lock:
            deployment = HostDeployment("github", len(self._state.deployments) + 1001, repo, ref, ref,
                                        body.get("environment", "production"), body)
            self._state.deployments.append(deployment)
        return 201, {"id": deployment.id, "sha": ref, "ref": ref, "task": body.get("task", "deploy"),
                     "payload": body.get("payload", {}), "environment": deployment.environment,
                     "description": body.get("description")}

    def _check_app_jwt(self, headers: dict[str, str]) -> FakeGitHubApp:
        """The request authenticates as the App: a JWT GitHub would take, or 401 saying why not."""
        app = self.github_app
        if app is None:
            raise _Breach(404, "Not Found: no GitHub App here")
        if headers.get("accept") != "application/vnd.github+json" or not headers.get("user-agent"):
            raise _Breach(422, "Accept application/vnd.github+json and a User-Agent are required")
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise _Breach(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(auth[len("Bearer "):], app.public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"], "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise _Breach(401, "'Expiration time' claim ('exp') must be a numeric value representing the future "
                               "time at which the assertion expires") from None
        except jwt.InvalidTokenError as exc:
            raise _Breach(401, f"A JSON web token could not be decoded: {type(exc).__name__}") from None
        now = time.time()
        if claims["iat"] > now + 1:
            raise _Breach(401, "'Issued at' claim ('iat') must be an Integer representing the time that the "
                               "assertion was issued")
        if claims["exp"] - claims["iat"] > JWT_MAX_SECONDS:
            raise _Breach(401, "'Expiration time' claim ('exp') is too far in the future")
        if str(claims["iss"]) != str(app.app_id):
            raise _Breach(401, "'Issuer' claim ('iss') must be an Integer")
        with self._lock:
            self._state.jwt_claims.append(claims)
        return app

    def _github_app(self, path: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """The App's own endpoints (installation lookup, access tokens); None for another path."""
        if (m := _GITHUB_INSTALLATION.match(path)) and method == "GET":
            app = self._check_app_jwt(headers)
            if f"{m['owner']}/{m['repo']}" not in app.repos:
                raise _Breach(404, "Not Found")
            return 200, {"id": app.installation_id, "app_id": app.app_id, "target_type": "Organization"}
        if (m := _GITHUB_APP_TOKENS.match(path)) and method == "POST":
            app = self._check_app_jwt(headers)
            if m["id"] != str(app.installation_id):
                raise _Breach(404, "Not Found")
            token = "ghs_" + secrets.token_urlsafe(27)
            expires = time.time() + app.token_seconds
            with self._lock:
                self._state.app_tokens[token] = expires
            return 201, {"token": token, "expires_at": datetime.fromtimestamp(expires, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "permissions": {"checks": "write", "contents": "read",
                                                       "deployments": "write", "statuses": "write",
                                                       "metadata": "read"}, "repository_selection": "selected"}
        return None

    def _github_check_runs(self, m: re.Match[str], method: str, headers: dict[str, str],
                           raw: bytes) -> tuple[int, dict[str, Any]]:
        """Checks API: only an App's installation token may write check runs."""
        if self.github_app is None:
            raise _Breach(403, "You must authenticate via a GitHub App.")
        self._check_github_headers(headers)
        repo = f"{m['owner']}/{m['repo']}"
        body = self._check_json(headers, raw)
        allowed = {"name", "head_sha", "details_url", "external_id", "status", "started_at", "conclusion",
                   "completed_at", "output", "actions"}
        self._check_keys(body, allowed)
        status = body.get("status")
        if status is not None and status not in CHECK_RUN_STATUSES:
            raise _Breach(422, f"status must be one of {sorted(CHECK_RUN_STATUSES)}, got {status!r}")
        conclusion = body.get("conclusion")
        if conclusion is not None and conclusion not in CHECK_RUN_CONCLUSIONS:
            raise _Breach(422, f"conclusion must be one of {sorted(CHECK_RUN_CONCLUSIONS)}, got {conclusion!r}")
        if status == "completed" and conclusion is None:
            raise _Breach(422, "conclusion is required when status is completed")
        self._check_url(body, "details_url")
        self._check_text(body, "external_id", None)
        output = self._check_type(body, "output", dict)
        if output is not None:
            self._check_keys(output, {"title", "summary", "text", "annotations", "images"})
            self._check_text(output, "title", 255, required=True)
            self._check_text(output, "summary", 65535, required=True)
        if method == "POST" and m["id"] is None:
            name = self._check_text(body, "name", None, required=True) or ""
            sha = self._check_text(body, "head_sha", None, required=True) or ""
            if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
                raise _Breach(422, f"head_sha is not a commit: {sha!r}")
            with self._lock:
                run = CheckRun(len(self._state.check_runs) + 3001, repo, sha, name, body)
                self._state.check_runs.append(run)
            return 201, {"id": run.id, "head_sha": sha, "name": name, "status": run.status,
                         "conclusion": run.conclusion, "external_id": body.get("external_id")}
        if method == "PATCH" and m["id"] is not None:
            with self._lock:
                found = [c for c in self._state.check_runs if str(c.id) == m["id"] and c.repo == repo]
                if not found:
                    raise _Breach(404, "Not Found")
                found[0].updates.append(body)
                run = found[0]
            return 200, {"id": run.id, "head_sha": run.head_sha, "name": run.name, "status": run.status,
                         "conclusion": run.conclusion}
        raise _Breach(404, f"no such endpoint: {method}")

    def _gitlab_deployments(self, m: re.Match[str], method: str, headers: dict[str, str],
                            raw: bytes) -> tuple[int, dict[str, Any]]:
        self._check_gitlab_token(headers)
        project = m["project"]
        if not project.isdigit() and "%2f" not in project.lower():
            raise _Breach(404, f"404 Project Not Found: {project!r}")
        repo = unquote(project)
        body = self._check_json(headers, raw)
        if (method, m["id"] is None) == ("POST", True):
            self._check_keys(body, {"environment", "sha", "ref", "tag", "status"})
            for key in ("environment", "sha", "ref"):
                value = body.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise _Breach(400, f"{key} is missing, empty or not a string")
            if not isinstance(body.get("tag"), bool):
                raise _Breach(400, f"tag is missing or not a boolean: {body.get('tag')!r}")
            if body.get("status") not in GITLAB_DEPLOYMENT_STATUSES:
                raise _Breach(400, f"status does not have a valid value: {body.get('status')!r}")
            if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", body["sha"]):
                raise _Breach(400, "sha: The commit does not exist")
            with self._lock:
                deployment = HostDeployment("gitlab", len(self._state.deployments) + 501, repo, body["sha"],
                                            body["ref"], body["environment"], body, [body["status"]])
                self._state.deployments.append(deployment)
            return 201, self._gitlab_answer(deployment)
        if method == "PUT" and m["id"] is not None:
            deployment = self._find_deployment("gitlab", repo, m["id"])
            self._check_keys(body, {"status"})
            if body.get("status") not in GITLAB_DEPLOYMENT_STATUSES:
                raise _Breach(400, f"status does not have a valid value: {body.get('status')!r}")
            with self._lock:
                deployment.statuses.append(body["status"])
                deployment.updates.append(body)
            return 200, self._gitlab_answer(deployment)
        raise _Breach(404, f"no such endpoint: {method}")

    # -- pull request comments and GitLab environments --------------------------------------------

    def _comment_answer(self, comment: Comment) -> dict[str, Any]:
        author = {"login": comment.author} if comment.kind != "gitlab" else {"username": comment.author}
        key = "author" if comment.kind == "gitlab" else "user"
        return {"id": comment.id, "body": comment.body, key: author}

    def _comment_body(self, headers: dict[str, str], raw: bytes, allowed: set[str], limit: int | None) -> str:
        body = self._check_json(headers, raw)
        self._check_keys(body, allowed)
        text = self._check_text(body, "body", limit, required=True) or ""
        if not text.strip():
            raise _Breach(422, "body cannot be blank")
        return text

    def _find_comment(self, kind: str, repo: str, raw_id: str, number: int | None = None) -> Comment:
        with self._lock:
            for c in self._state.comments:
                if c.kind == kind and str(c.id) == raw_id and c.repo == repo and number in (None, c.number):
                    return c
        raise _Breach(404, "Not Found")

    def _comments(self, kind: str, path: str, method: str, headers: dict[str, str],
                  raw: bytes) -> tuple[int, Any] | None:
        """A pull request comment request of any host; None when `path` is no comments route."""
        path, _, query = path.partition("?")
        patterns = {"github": _GITHUB_COMMENTS, "gitea": _GITEA_COMMENTS, "gitlab": _GITLAB_NOTES}
        m = patterns[kind].match(path) if kind in patterns else None
        if m is None:
            return None
        if kind == "github":
            self._check_github_headers(headers)
            repo = f"{m['owner']}/{m['repo']}"
            list_query, edit_method, allowed, limit = GITHUB_COMMENTS_QUERY, "PATCH", {"body"}, GITHUB_COMMENT_LIMIT
        elif kind == "gitea":
            token = self.tokens["gitea"]
            if headers.get("authorization", "") not in (f"token {token}", f"Bearer {token}"):
                raise _Breach(401, "token is required")
            repo = f"{m['owner']}/{m['repo']}"
            list_query, edit_method, allowed, limit = GITEA_COMMENTS_QUERY, "PATCH", {"body"}, None
        else:
            self._check_gitlab_token(headers)
            if not m["project"].isdigit() and "%2f" not in m["project"].lower():
                raise _Breach(404, f"404 Project Not Found: {m['project']!r}")
            repo = unquote(m["project"])
            list_query, edit_method, limit = GITLAB_NOTES_QUERY, "PUT", 1_000_000
            allowed = {"body", "internal", "created_at", "merge_request_diff_head_sha"} if m["id"] is None \
                else {"body", "internal"}
        number = int(m["number"]) if m["number"] is not None else None
        with self._lock:
            self._state.comment_requests.append((method, path))
        if m["id"] is None and number is not None and method == "GET":
            params = self._check_query(query, list_query)
            listed = self.comments(kind, repo, number)
            if kind == "gitlab" and params.get("sort", "desc") == "desc":
                listed.reverse()  # GitLab lists the newest note first unless asked otherwise
            if kind != "gitea":
                size = int(params.get("per_page", "30" if kind == "github" else "20"))
                page = int(params.get("page", "1"))
                listed = listed[(page - 1) * size:page * size]
            return 200, [self._comment_answer(c) for c in listed]
        if m["id"] is None and number is not None and method == "POST":
            text = self._comment_body(headers, raw, allowed, limit)
            with self._lock:
                comment = Comment(kind, 9001 + len(self._state.comments), repo, number, text, "hooksvc", [], headers)
                self._state.comments.append(comment)
            return 201, self._comment_answer(comment)
        if m["id"] is not None and method == edit_method:
            comment = self._find_comment(kind, repo, m["id"], number)
            text = self._comment_body(headers, raw, allowed, limit)
            if comment.author != "hooksvc":
                raise _Breach(403, "Must have admin rights to edit another user's comment")
            with self._lock:
                comment.edits.append(comment.body)
                comment.body = text
            return 200, self._comment_answer(comment)
        raise _Breach(404, f"{method} {path}: not an endpoint")

    def _gitlab_environments(self, path: str, method: str, headers: dict[str, str],
                             raw: bytes) -> tuple[int, Any] | None:
        """GitLab's environments API; None when `path` is no environments route."""
        path, _, query = path.partition("?")
        m = _GITLAB_ENVIRONMENTS.match(path)
        if m is None:
            return None
        self._check_gitlab_token(headers)
        if not m["project"].isdigit() and "%2f" not in m["project"].lower():
            raise _Breach(404, f"404 Project Not Found: {m['project']!r}")
        repo = unquote(m["project"])
        with self._lock:
            self._state.comment_requests.append((method, path))
        if m["id"] is None and method == "GET":
            params = self._check_query(query, GITLAB_ENVIRONMENTS_QUERY)
            if "name" in params and "search" in params:
                raise _Breach(400, "name, search are mutually exclusive")
            found = [e for e in self.environments() if e.repo == repo and params.get("name") in (None, e.name)]
            return 200, [self._environment_answer(e) for e in found]
        if m["id"] is None and method == "POST":
            body = self._check_json(headers, raw)
            self._check_keys(body, {"name", "external_url", "tier", "cluster_agent_id", "kubernetes_namespace",
                                    "flux_resource_path", "description", "auto_stop_setting"})
            name = self._check_text(body, "name", 255, required=True) or ""
            if not re.fullmatch(r"[a-zA-Z0-9_\-/${}. ]+", name):
                raise _Breach(400, "name can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', "
                                   "and spaces")
            self._check_url(body, "external_url")
            tier = body.get("tier", "other")
            if tier not in GITLAB_TIERS:
                raise _Breach(400, f"tier does not have a valid value: {tier!r}")
            with self._lock:
                if any(e.repo == repo and e.name == name for e in self._state.environments):
                    raise _Breach(400, "Name has already been taken")
                environment = Environment(len(self._state.environments) + 71, repo, name, body.get("external_url"),
                                          tier)
                self._state.environments.append(environment)
            return 201, self._environment_answer(environment)
        if m["id"] is not None and m["action"] is None and method == "PUT":
            body = self._check_json(headers, raw)
            self._check_keys(body, {"external_url", "tier", "cluster_agent_id", "kubernetes_namespace",
                                    "flux_resource_path", "description", "auto_stop_setting"})
            self._check_url(body, "external_url")
            with self._lock:
                found = [e for e in self._state.environments if str(e.id) == m["id"] and e.repo == repo]
                if not found:
                    raise _Breach(404, "404 Environment Not Found")
                found[0].external_url = body.get("external_url", found[0].external_url)
                return 200, self._environment_answer(found[0])
        if m["action"] == "stop" and method == "POST":
            body = self._check_json(headers, raw) if raw else {}
            self._check_keys(body, {"force"})
            self._check_type(body, "force", bool)
            with self._lock:
                found = [e for e in self._state.environments if str(e.id) == m["id"] and e.repo == repo]
                if not found:
                    raise _Breach(404, "404 Environment Not Found")
                found[0].state = "stopped"
                return 200, self._environment_answer(found[0])
        raise _Breach(404, f"{method} {path}: not an endpoint")

    @staticmethod
    def _environment_answer(e: Environment) -> dict[str, Any]:
        return {"id": e.id, "name": e.name, "slug": e.name.replace("/", "-"), "external_url": e.external_url,
                "state": e.state, "tier": e.tier}

    @staticmethod
    def _gitlab_answer(d: HostDeployment) -> dict[str, Any]:
        return {"id": d.id, "iid": d.id - 500, "ref": d.ref, "sha": d.sha, "status": d.state,
                "environment": {"name": d.environment}}

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

    def _handle(self, path: str, headers: dict[str, str], raw: bytes,
                method: str = "POST") -> tuple[int, Any]:
        """Check one request and record it; returns the status code and JSON answer."""
        route = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        if (answer := self._comments(route, path, method, headers, raw)) is not None:
            return answer
        if route == "gitlab" and (answer := self._gitlab_environments(path, method, headers, raw)) is not None:
            return answer
        if route == "github" and (answer := self._github_app(path, method, headers)) is not None:
            return answer
        if route == "github" and (cm := _GITHUB_CHECK_RUNS.match(path)):
            return self._github_check_runs(cm, method, headers, raw)
        if route == "github" and (dm := _GITHUB_DEPLOYMENTS.match(path)):
            return self._github_deployments(dm, method, headers, raw)
        if route == "gitlab" and (dm := _GITLAB_DEPLOYMENTS.match(path)):
            return self._gitlab_deployments(dm, method, headers, raw)
        if method != "POST":
            raise _Breach(405, f"{method} {path}: not an endpoint")
        checks = {"github": (_GITHUB_PATH, self._github), "gitea": (_GITEA_PATH, self._gitea),
                  "gitlab": (_GITLAB_PATH, self._gitlab), "bitbucket": (_BITBUCKET_PATH, self._bitbucket),
                  "bitbucket-server": (_BITBUCKET_SERVER_PATH, self._bitbucket_server)}
        if route in checks:
            pattern, check = checks[route]
            m = pattern.match(path)
            if m is None:
                raise _Breach(404, f"no such endpoint {path!r}")
            accepted = check(m, headers, raw)
            with self._lock:
                self._state.accepted.append(accepted)
                self._state.statuses[(route, accepted.sha, accepted.context)].append(accepted.state)
            if route == "bitbucket-server":
                return 204, {}  # Data Center answers a build status with no content
            if route == "bitbucket":
                return 201, {"key": accepted.context, "state": accepted.state, "url": accepted.target_url}
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

    # -- CI check reads ----------------------------------------------------------------------------

    @staticmethod
    def _check_query(query: str, allowed: dict[str, set[str] | None]) -> dict[str, str]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        for key, value in params.items():
            if key not in allowed:
                raise _Breach(422, f"unknown query parameter {key!r}")
            values = allowed[key]
            if values is not None and value not in values:
                raise _Breach(422, f"{key} must be one of {sorted(values)}, got {value!r}")
            if key in ("per_page", "limit", "page") and not (value.isdigit() and 0 < int(value) <= 100):
                raise _Breach(422, f"{key} must be a number from 1 to 100, got {value!r}")
        return params

    def _posted_statuses(self, kind: str, repo: str, sha: str) -> list[dict[str, Any]]:
        """Statuses as the host lists them: newest first, what CI set and what hooksvc posted."""
        with self._lock:
            own = [{"context": a.context, "state": a.state, "target_url": a.target_url}
                   for a in reversed(self._state.accepted) if a.kind == kind and a.repo == repo and a.sha == sha]
            return own + list(self._state.commit_statuses.get((kind, repo, sha), []))

    def _read_checks(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        """Answer one check read like the host does."""
        path, _, query = path.partition("?")
        if m := _GITHUB_CHECK_READS.match(path):
            self._check_github_headers(headers)
            repo, sha = f"{m['owner']}/{m['repo']}", m["sha"]
            with self._lock:
                self._state.check_reads["github"] += 1
            if m["what"] == "check-runs":
                params = self._check_query(query, GITHUB_CHECK_RUNS_QUERY)
                with self._lock:
                    runs = list(self._state.ci_check_runs.get((repo, sha), []))
                if "check_name" in params:
                    runs = [r for r in runs if r["name"] == params["check_name"]]
                return 200, {"total_count": len(runs), "check_runs": runs}
            self._check_query(query, GITHUB_STATUS_QUERY)
            latest: dict[str, dict[str, Any]] = {}
            for status in self._posted_statuses("github", repo, sha):
                latest.setdefault(status["context"], status)
            states = {s["state"] for s in latest.values()}
            combined = ("failure" if states & {"failure", "error"} else "pending" if "pending" in states or not states
                        else "success")
            return 200, {"state": combined, "sha": sha, "total_count": len(latest), "statuses": list(latest.values())}
        if m := _GITEA_STATUS_READ.match(path):
            auth = headers.get("authorization", "")
            if auth != f"token {self.tokens['gitea']}":
                raise _Breach(401, "token is required")
            self._check_query(query, GITEA_STATUS_QUERY)
            repo, sha = f"{m['owner']}/{m['repo']}", m["sha"]
            with self._lock:
                self._state.check_reads["gitea"] += 1
            # Gitea's CommitStatus names its state `status`.
            statuses = [{"id": 700 + i, "status": s["state"], "context": s["context"],
                         "target_url": s.get("target_url") or "", "description": ""}
                        for i, s in enumerate(self._posted_statuses("gitea", repo, sha))]
            return 200, {"state": "pending", "sha": sha, "total_count": len(statuses), "statuses": statuses}
        if m := _GITLAB_PIPELINES.match(path):
            self._check_gitlab_token(headers)
            params = self._check_query(query, GITLAB_PIPELINES_QUERY)
            repo = unquote(m["project"])
            with self._lock:
                self._state.check_reads["gitlab"] += 1
                pipelines = [p for (r, sha), ps in self._state.pipelines.items() if r == repo for p in ps
                             if params.get("sha") in (None, sha)]
            pipelines.sort(key=lambda p: p["id"], reverse=params.get("sort", "desc") == "desc")
            return 200, pipelines
        raise _Breach(404, f"GET {path}: not an endpoint")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = b"" if status == 204 else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (it timed out on a hung request)

            def do_PUT(self) -> None:  # noqa: N802 - the name http.server dispatches to
                self.do_POST("PUT")

            def do_PATCH(self) -> None:  # noqa: N802 - the name http.server dispatches to
                self.do_POST("PATCH")

            def do_POST(self, method: str = "POST") -> None:  # noqa: N802 - the name http.server dispatches to
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                route = self.path.split("/", 2)[1] if self.path.count("/") >= 1 else ""
                # `github-deployments` / `gitlab-deployments` faults hit the deployments API only
                # (GitLab's environments too), `<kind>-comments` the pull request comments.
                if "/deployments" in self.path or "/environments" in self.path:
                    fault = fake._take_fault(f"{route}-deployments")
                elif "/comments" in self.path or "/notes" in self.path:
                    fault = fake._take_fault(f"{route}-comments")
                else:
                    fault = None
                fault = fault or fake._take_fault(route)
                if fault is not None:
                    if fault.status is None:
                        fake._closing.wait(fake.hang_seconds)
                        self.close_connection = True
                        self._answer(504, {"message": "hung"})
                    else:
                        self._answer(fault.status, {"message": f"injected {fault.status}"})
                    return
                try:
                    status, body = fake._handle(self.path, headers, raw, method)
                except _Breach as breach:
                    with fake._lock:
                        fake._state.violations.append(f"{self.path}: {breach.message}")
                    status, body = breach.status, {"message": breach.message}
                self._answer(status, body)

            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                if fake.github_app is not None and _GITHUB_INSTALLATION.match(self.path):
                    self.do_POST("GET")
                    return
                plain = self.path.partition("?")[0]
                reporting = (_GITHUB_COMMENTS, _GITEA_COMMENTS, _GITLAB_NOTES, _GITLAB_ENVIRONMENTS)
                if any(p.match(plain) for p in reporting):
                    self.do_POST("GET")
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                route = self.path.split("/", 2)[1] if self.path.count("/") >= 1 else ""
                fault = fake._take_fault(f"{route}-checks")
                if fault is not None:
                    self._answer(fault.status or 504, {"message": "injected"})
                    return
                try:
                    status, body = fake._read_checks(self.path, headers)
                except _Breach as breach:
                    with fake._lock:
                        fake._state.violations.append(f"GET {self.path}: {breach.message}")
                    status, body = breach.status, {"message": breach.message}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

"""Commit-status requests, one module per git host; this package holds what they share.

Every builder is pure: a `HostConfig`, a commit and a deployment state in, an `HttpRequest` out.
Sending it (and retrying) is `workers.outbox_sender`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from hooksvc.deployments import DeploymentState

#: Cut descriptions end with this one character, so a cut text still fits the host's limit.
ELLIPSIS = "…"
#: Sent with every request: GitHub rejects API calls without a User-Agent.
USER_AGENT = "hooksvc"
#: Headers whose values are credentials; they never appear in a repr or a log line.
SECRET_HEADERS = frozenset({"authorization", "private-token"})


@dataclass(frozen=True)
class HttpRequest:
    """One outgoing HTTP request. Its repr shows neither the path (a Slack URL is a secret) nor credentials."""

    method: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json: Mapping[str, object] | None = field(default=None, repr=False)

    def body(self) -> bytes:
        """The exact bytes sent (compact, key-sorted JSON), so a signature can be computed over them."""
        return encode_json(self.json) if self.json is not None else b""

    def describe(self) -> str:
        """`POST https://host` — safe for logs: no path, no query, no credentials."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{self.method} {parts.scheme}://{host}{port}"

    def __repr__(self) -> str:
        return f"HttpRequest({self.describe()}, headers={sorted(self.headers)})"


def encode_json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def truncate(text: str, limit: int) -> str:
    """`text` when it fits in `limit` characters, else its start plus an ellipsis, `limit` long."""
    if limit < 1:
        raise ValueError(f"a description limit must be at least 1, got {limit!r}")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def one_line(text: str) -> str:
    """The first non-blank line of `text`, whitespace collapsed: a status description is one line."""
    for line in text.splitlines():
        if line.strip():
            return re.sub(r"\s+", " ", line).strip()
    return ""


def describe_state(deployment_id: str, state: DeploymentState, error: str = "") -> str:
    """The human sentence shown next to a commit status, before any host limit is applied."""
    reason = one_line(error)
    match state:
        case DeploymentState.QUEUED:
            return f"Deployment {deployment_id} queued"
        case DeploymentState.RUNNING:
            return f"Deployment {deployment_id} running"
        case DeploymentState.SUCCEEDED:
            return f"Deployment {deployment_id} succeeded"
        case DeploymentState.FAILED:
            return f"Deployment {deployment_id} failed: {reason}" if reason else f"Deployment {deployment_id} failed"
        case DeploymentState.ERROR:
            return f"Deployment {deployment_id} error: {reason}" if reason else f"Deployment {deployment_id} error"
        case DeploymentState.SKIPPED:
            return f"Skipped: {reason}" if reason else "Skipped: nothing to deploy"
        case DeploymentState.SUPERSEDED:
            return f"Not deployed: {reason}" if reason else "Not deployed: superseded by a newer push"
        case DeploymentState.CANCELLED:
            return "Not deployed: cancelled by an operator"


def mark_skipped(description: str) -> str:
    """Hosts without a `skipped` state show `success`; the description must then say it was skipped."""
    return description if description.lower().startswith("skipped") else f"Skipped: {description}"


def api_base(api_url: str, suffix: str) -> str:
    """`api_url` with the host's API path (`/api/v1`, `/api/v4`) appended unless it already ends with it."""
    base = api_url.rstrip("/")
    return base if base.endswith(suffix) else base + suffix


#: GitHub, Gitea and Forgejo share these four states. Neither has `skipped` nor `canceled` (Gitea's
#: newer `skipped` is not sent): a skip is a `success` that says so, and a deployment that never ran
#: is an `error` so nobody mistakes that commit for a live one.
FOUR_STATE_MAP = {
    DeploymentState.QUEUED: "pending",
    DeploymentState.RUNNING: "pending",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failure",
    DeploymentState.ERROR: "error",
    DeploymentState.SKIPPED: "success",
    DeploymentState.SUPERSEDED: "error",
    DeploymentState.CANCELLED: "error",
}


def four_state_body(
    state: DeploymentState, context: str, description: str, limit: int, target_url: str
) -> dict[str, object]:
    """The JSON body GitHub and Gitea/Forgejo both take: state, context, description and target_url."""
    if state is DeploymentState.SKIPPED:
        description = mark_skipped(description)
    body: dict[str, object] = {
        "state": FOUR_STATE_MAP[state],
        "context": context,
        "description": truncate(description, limit),
    }
    if target_url:
        body["target_url"] = target_url
    return body


def repo_statuses_url(base: str, repo: str, sha: str) -> str:
    """`{base}/repos/{owner}/{name}/statuses/{sha}`: where GitHub and Gitea/Forgejo both take a status."""
    owner, name = repo.split("/", 1)
    return f"{base}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"


def json_headers(credential: tuple[str, str], accept: str = "application/json") -> dict[str, str]:
    """Headers of every status request: the host's credential header plus JSON content negotiation."""
    name, value = credential
    return {name: value, "Accept": accept, "Content-Type": "application/json", "User-Agent": USER_AGENT}

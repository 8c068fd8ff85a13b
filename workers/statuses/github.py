"""GitHub (and GitHub Enterprise) commit statuses: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.statuses import USER_AGENT, HttpRequest, mark_skipped, truncate

#: The REST API version the request shape follows (GitHub's documented header value).
API_VERSION = "2022-11-28"
DESCRIPTION_LIMIT = defaults.GITHUB_DESCRIPTION_LIMIT
STATES = frozenset({"error", "failure", "pending", "success"})

#: GitHub has neither `skipped` nor `canceled`: a skip is a `success` that says so, and a deployment
#: that never ran is an `error` so nobody mistakes that commit for a live one.
_STATE_MAP = {
    DeploymentState.QUEUED: "pending",
    DeploymentState.RUNNING: "pending",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failure",
    DeploymentState.ERROR: "error",
    DeploymentState.SKIPPED: "success",
    DeploymentState.SUPERSEDED: "error",
    DeploymentState.CANCELLED: "error",
}


def status_state(state: DeploymentState) -> str:
    return _STATE_MAP[state]


def build_status_request(
    host: HostConfig,
    repo: str,
    sha: str,
    state: DeploymentState,
    context: str,
    description: str,
    target_url: str,
    *,
    ref: str = "",
) -> HttpRequest:
    """The request that sets `context` on commit `sha` of `repo` ('owner/name') to `state`.

    `ref` is accepted for symmetry with GitLab and ignored: a GitHub status belongs to the sha alone.
    """
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitHub needs one to post commit statuses")
    if state is DeploymentState.SKIPPED:
        description = mark_skipped(description)
    body: dict[str, object] = {
        "state": status_state(state),
        "context": context,
        "description": truncate(description, DESCRIPTION_LIMIT),
    }
    if target_url:
        body["target_url"] = target_url
    owner, name = repo.split("/", 1)
    url = f"{host.api_url.rstrip('/')}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"
    headers = {
        "Authorization": f"Bearer {host.token.reveal()}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    return HttpRequest(method="POST", url=url, headers=headers, json=body)

"""Gitea and Forgejo commit statuses: `POST {api_url}/api/v1/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.statuses import USER_AGENT, HttpRequest, api_base, mark_skipped, truncate

#: Gitea documents no limit; GitLab's 255 keeps the text readable and fits Gitea's database column.
DESCRIPTION_LIMIT = defaults.GITLAB_DESCRIPTION_LIMIT
#: `skipped` exists only in newer Gitea releases, so it is never sent.
STATES = frozenset({"pending", "success", "error", "failure", "warning"})
API_PATH = "/api/v1"

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

    `api_url` may be the server root or already end with `/api/v1`. `ref` is ignored (sha only).
    """
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: Gitea/Forgejo need one to post commit statuses")
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
    base = api_base(host.api_url, API_PATH)
    url = f"{base}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"
    headers = {
        # `token` is the prefix every Gitea and Forgejo version accepts.
        "Authorization": f"token {host.token.reveal()}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    return HttpRequest(method="POST", url=url, headers=headers, json=body)

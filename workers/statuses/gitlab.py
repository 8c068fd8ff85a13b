"""GitLab commit statuses: `POST {api_url}/api/v4/projects/{group%2Fproject}/statuses/{sha}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.presentation import short_ref
from workers.http import HttpRequest
from workers.statuses import StatusReporter, StatusUpdate, api_base, json_headers, truncate

#: GitLab rejects `description`, `target_url` and `ref` longer than this.
FIELD_LIMIT = defaults.GITLAB_DESCRIPTION_LIMIT
DESCRIPTION_LIMIT = FIELD_LIMIT
API_PATH = "/api/v4"

#: GitLab has a state for each of ours, except that failed and error both end `failed`.
_STATE_MAP = {
    DeploymentState.QUEUED: "pending",
    DeploymentState.HELD: "pending",
    DeploymentState.RUNNING: "running",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failed",
    DeploymentState.ERROR: "failed",
    DeploymentState.SKIPPED: "skipped",
    DeploymentState.SUPERSEDED: "canceled",
    DeploymentState.CANCELLED: "canceled",
}


def status_state(state: DeploymentState) -> str:
    return _STATE_MAP[state]


def project_id(repo: str) -> str:
    """`group%2Fsub%2Fproject`: GitLab takes a path as the project id once it is URL-encoded."""
    return quote(repo, safe="")


def build_status_request(host: HostConfig, update: StatusUpdate) -> HttpRequest:
    """The request that sets status `update.context` (GitLab's `name`) on commit `update.sha` of project `update.repo`.

    `api_url` may be the server root or already end with `/api/v4`. A `target_url` or `ref` over
    GitLab's limit is left out rather than cut: a cut URL or ref would point somewhere else.
    """
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitLab needs one to post commit statuses")
    body: dict[str, object] = {
        "state": status_state(update.state),
        "name": update.context,
        "description": truncate(update.description, DESCRIPTION_LIMIT),
    }
    if update.target_url and len(update.target_url) <= FIELD_LIMIT:
        body["target_url"] = update.target_url
    branch = short_ref(update.ref)
    if branch and len(branch) <= FIELD_LIMIT:
        body["ref"] = branch
    url = f"{api_base(host.api_url, API_PATH)}/projects/{project_id(update.repo)}/statuses/{update.sha}"
    headers = json_headers(("PRIVATE-TOKEN", host.token.reveal()))
    return HttpRequest(method="POST", url=url, headers=headers, json=body)


REPORTER = StatusReporter(kinds=frozenset({"gitlab"}), build=build_status_request)

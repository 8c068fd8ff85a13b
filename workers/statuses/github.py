"""GitHub (and GitHub Enterprise) commit statuses: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.statuses import HttpRequest, four_state_body, json_headers, repo_statuses_url

#: The REST API version the request shape follows (GitHub's documented header value).
API_VERSION = "2022-11-28"
DESCRIPTION_LIMIT = defaults.GITHUB_DESCRIPTION_LIMIT


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
    body = four_state_body(state, context, description, DESCRIPTION_LIMIT, target_url)
    url = repo_statuses_url(host.api_url.rstrip("/"), repo, sha)
    headers = json_headers(("Authorization", f"Bearer {host.token.reveal()}"), accept="application/vnd.github+json")
    headers["X-GitHub-Api-Version"] = API_VERSION
    return HttpRequest(method="POST", url=url, headers=headers, json=body)

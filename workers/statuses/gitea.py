"""Gitea and Forgejo commit statuses: `POST {api_url}/api/v1/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from workers.statuses import HttpRequest, api_base, four_state_body, json_headers, repo_statuses_url

#: Gitea documents no limit; GitLab's 255 keeps the text readable and fits Gitea's database column.
DESCRIPTION_LIMIT = defaults.GITLAB_DESCRIPTION_LIMIT
API_PATH = "/api/v1"


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
    body = four_state_body(state, context, description, DESCRIPTION_LIMIT, target_url)
    url = repo_statuses_url(api_base(host.api_url, API_PATH), repo, sha)
    # `token` is the prefix every Gitea and Forgejo version accepts.
    headers = json_headers(("Authorization", f"token {host.token.reveal()}"))
    return HttpRequest(method="POST", url=url, headers=headers, json=body)

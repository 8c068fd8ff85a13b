"""Gitea and Forgejo commit statuses: `POST {api_url}/api/v1/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from hooksvc import defaults
from hooksvc.config import HostConfig
from workers.http import HttpRequest
from workers.statuses import (
    StatusReporter,
    StatusUpdate,
    api_base,
    four_state_body,
    json_headers,
    repo_statuses_url,
)

#: Gitea documents no limit; GitLab's 255 keeps the text readable and fits Gitea's database column.
DESCRIPTION_LIMIT = defaults.GITLAB_DESCRIPTION_LIMIT
API_PATH = "/api/v1"


def build_status_request(host: HostConfig, update: StatusUpdate) -> HttpRequest:
    """The request that sets `update.context` on commit `update.sha` of `update.repo` ('owner/name').

    `api_url` may be the server root or already end with `/api/v1`. A status belongs to the sha alone.
    """
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: Gitea/Forgejo need one to post commit statuses")
    body = four_state_body(update, DESCRIPTION_LIMIT)
    url = repo_statuses_url(api_base(host.api_url, API_PATH), update.repo, update.sha)
    # `token` is the prefix every Gitea and Forgejo version accepts.
    headers = json_headers(("Authorization", f"token {host.token.reveal()}"))
    return HttpRequest(method="POST", url=url, headers=headers, json=body)


#: Forgejo is a Gitea fork with the same status API.
REPORTER = StatusReporter(kinds=frozenset({"gitea", "forgejo"}), build=build_status_request)

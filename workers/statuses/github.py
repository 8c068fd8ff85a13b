"""GitHub (and GitHub Enterprise) commit statuses: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from workers.http import HttpRequest
from workers.statuses import StatusReporter, StatusUpdate, four_state_body, json_headers, repo_statuses_url

#: The REST API version the request shape follows (GitHub's documented header value).
API_VERSION = "2022-11-28"
DESCRIPTION_LIMIT = defaults.GITHUB_DESCRIPTION_LIMIT


def github_headers(host: HostConfig, purpose: str) -> dict[str, str]:
    """Headers of every GitHub REST request: `Bearer` with the host's token (a personal token, or an
    installation token put there by `workers.host_auth.with_token`), JSON, the API version."""
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitHub needs one to {purpose}")
    headers = json_headers(("Authorization", f"Bearer {host.token.reveal()}"), accept="application/vnd.github+json")
    headers["X-GitHub-Api-Version"] = API_VERSION
    return headers


def github_repo_url(host: HostConfig, repo: str) -> str:
    """`{api_url}/repos/{owner}/{name}`, each part URL-encoded."""
    owner, name = repo.split("/", 1)
    return f"{host.api_url.rstrip('/')}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def build_status_request(host: HostConfig, update: StatusUpdate) -> HttpRequest:
    """The request that sets `update.context` on commit `update.sha` of `update.repo` ('owner/name').

    A GitHub status belongs to the sha alone: the ref plays no part.
    """
    headers = github_headers(host, "post commit statuses")
    body = four_state_body(update, DESCRIPTION_LIMIT)
    url = repo_statuses_url(host.api_url.rstrip("/"), update.repo, update.sha)
    return HttpRequest(method="POST", url=url, headers=headers, json=body)


REPORTER = StatusReporter(kinds=frozenset({"github"}), build=build_status_request)

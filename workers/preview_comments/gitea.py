"""Gitea and Forgejo pull request comments (the issues comments API: a pull request is an issue):
`GET {api_url}/api/v1/repos/{owner}/{repo}/issues/{index}/comments` (every comment at once: the
route has no paging), `POST` there, and `PATCH .../issues/comments/{id}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc.config import HostConfig
from workers.http import HttpRequest
from workers.preview_comments import CommentsApi
from workers.statuses import api_base, json_headers
from workers.statuses.gitea import API_PATH


def _repo_url(host: HostConfig, repo: str) -> str:
    owner, name = repo.split("/", 1)
    return f"{api_base(host.api_url, API_PATH)}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _headers(host: HostConfig) -> dict[str, str]:
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: Gitea/Forgejo need one to comment on pull requests")
    return json_headers(("Authorization", f"token {host.token.reveal()}"))


def build_list_request(host: HostConfig, repo: str, number: int, page: int) -> HttpRequest:
    """All of the pull request's comments (`page` plays no part: Gitea answers them all)."""
    return HttpRequest("GET", f"{_repo_url(host, repo)}/issues/{number}/comments", headers=_headers(host))


def build_create_request(host: HostConfig, repo: str, number: int, body: str) -> HttpRequest:
    return HttpRequest("POST", f"{_repo_url(host, repo)}/issues/{number}/comments", headers=_headers(host),
                       json={"body": body})


def build_update_request(host: HostConfig, repo: str, number: int, comment_id: str, body: str) -> HttpRequest:
    return HttpRequest("PATCH", f"{_repo_url(host, repo)}/issues/comments/{comment_id}", headers=_headers(host),
                       json={"body": body})


#: Forgejo is a Gitea fork with the same comments API.
COMMENTS = CommentsApi(
    kinds=frozenset({"gitea", "forgejo"}),
    list=build_list_request,
    create=build_create_request,
    update=build_update_request,
    page_size=None,
    permission_hint="if the token may not comment, give it the write:issue scope and write access to the "
                    "repository's pull requests",
)

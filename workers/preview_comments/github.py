"""GitHub pull request comments (the issues comments API: a pull request is an issue):
`GET {api_url}/repos/{owner}/{repo}/issues/{number}/comments`, `POST` there, and
`PATCH .../issues/comments/{comment_id}`."""

from __future__ import annotations

from hooksvc.config import HostConfig
from workers.http import HttpRequest
from workers.preview_comments import CommentsApi
from workers.statuses.github import github_headers, github_repo_url

#: GitHub's largest page.
PAGE_SIZE = 100


def _headers(host: HostConfig) -> dict[str, str]:
    return github_headers(host, "comment on pull requests")


def build_list_request(host: HostConfig, repo: str, number: int, page: int) -> HttpRequest:
    """Page `page` of the pull request's comments, oldest first (GitHub's order)."""
    url = f"{github_repo_url(host, repo)}/issues/{number}/comments?per_page={PAGE_SIZE}&page={page}"
    return HttpRequest("GET", url, headers=_headers(host))


def build_create_request(host: HostConfig, repo: str, number: int, body: str) -> HttpRequest:
    return HttpRequest("POST", f"{github_repo_url(host, repo)}/issues/{number}/comments", headers=_headers(host),
                       json={"body": body})


def build_update_request(host: HostConfig, repo: str, number: int, comment_id: str, body: str) -> HttpRequest:
    """An edit names the comment alone: GitHub's path has no pull request number."""
    return HttpRequest("PATCH", f"{github_repo_url(host, repo)}/issues/comments/{comment_id}", headers=_headers(host),
                       json={"body": body})


COMMENTS = CommentsApi(
    kinds=frozenset({"github"}),
    list=build_list_request,
    create=build_create_request,
    update=build_update_request,
    page_size=PAGE_SIZE,
    permission_hint="if the token may not comment, give it write access to pull requests (fine-grained: Pull "
                    "requests read and write; a GitHub App: the Pull requests write permission)",
)

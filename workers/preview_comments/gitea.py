"""Gitea and Forgejo pull request comments (the issues comments API: a pull request is an issue):
`GET {api_url}/api/v1/repos/{owner}/{repo}/issues/{index}/comments` (every comment at once: the
route has no paging), `POST` there, and `PATCH .../issues/comments/{id}`."""

from __future__ import annotations

from urllib.parse import quote

from hooksvc.config import HostConfig
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


#: Forgejo is a Gitea fork with the same comments API.
COMMENTS = CommentsApi(
    kinds=frozenset({"gitea", "forgejo"}),
    comments_url=lambda host, repo, number: f"{_repo_url(host, repo)}/issues/{number}/comments",
    comment_url=lambda host, repo, _number, comment_id: f"{_repo_url(host, repo)}/issues/comments/{comment_id}",
    edit_method="PATCH",
    list_query=lambda _page: "",
    page_size=None,
    headers=_headers,
    permission_hint="if the token may not comment, give it the write:issue scope and write access to the "
                    "repository's pull requests",
)

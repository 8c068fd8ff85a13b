"""GitHub pull request comments (the issues comments API: a pull request is an issue):
`GET {api_url}/repos/{owner}/{repo}/issues/{number}/comments`, `POST` there, and
`PATCH .../issues/comments/{comment_id}` (no pull request number in that path)."""

from __future__ import annotations

from hooksvc.config import HostConfig
from workers.preview_comments import CommentsApi
from workers.statuses.github import github_headers, github_repo_url

#: GitHub's largest page; it lists comments oldest first.
PAGE_SIZE = 100


def _headers(host: HostConfig) -> dict[str, str]:
    return github_headers(host, "comment on pull requests")

COMMENTS = CommentsApi(
    kinds=frozenset({"github"}),
    comments_url=lambda host, repo, number: f"{github_repo_url(host, repo)}/issues/{number}/comments",
    comment_url=lambda host, repo, _number, comment_id: f"{github_repo_url(host, repo)}/issues/comments/{comment_id}",
    edit_method="PATCH",
    list_query=lambda page: f"per_page={PAGE_SIZE}&page={page}",
    page_size=PAGE_SIZE,
    headers=_headers,
    permission_hint="if the token may not comment, give it write access to pull requests (fine-grained: Pull "
                    "requests read and write; a GitHub App: the Pull requests write permission)",
)

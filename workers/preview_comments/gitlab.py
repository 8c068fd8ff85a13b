"""GitLab merge request notes: `GET {api_url}/api/v4/projects/{id}/merge_requests/{iid}/notes`,
`POST` there, and `PUT .../notes/{note_id}`."""

from __future__ import annotations

from hooksvc.config import HostConfig
from workers.preview_comments import CommentsApi
from workers.statuses import api_base, json_headers
from workers.statuses.gitlab import API_PATH, project_id

#: GitLab's largest page; asked oldest first (its default is newest first).
PAGE_SIZE = 100


def _notes_url(host: HostConfig, repo: str, number: int) -> str:
    return f"{api_base(host.api_url, API_PATH)}/projects/{project_id(repo)}/merge_requests/{number}/notes"


def _headers(host: HostConfig) -> dict[str, str]:
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitLab needs one to comment on merge requests")
    return json_headers(("PRIVATE-TOKEN", host.token.reveal()))


COMMENTS = CommentsApi(
    kinds=frozenset({"gitlab"}),
    comments_url=_notes_url,
    comment_url=lambda host, repo, number, note_id: f"{_notes_url(host, repo, number)}/{note_id}",
    edit_method="PUT",
    list_query=lambda page: f"sort=asc&order_by=created_at&per_page={PAGE_SIZE}&page={page}",
    page_size=PAGE_SIZE,
    headers=_headers,
    permission_hint="if the token may not comment, give it the api scope and at least the Reporter role",
)

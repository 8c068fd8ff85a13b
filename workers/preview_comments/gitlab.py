"""GitLab merge request notes: `GET {api_url}/api/v4/projects/{id}/merge_requests/{iid}/notes`,
`POST` there, and `PUT .../notes/{note_id}`."""

from __future__ import annotations

from hooksvc.config import HostConfig
from workers.http import HttpRequest
from workers.preview_comments import CommentsApi
from workers.statuses import api_base, json_headers
from workers.statuses.gitlab import API_PATH, project_id

#: GitLab's largest page.
PAGE_SIZE = 100


def _notes_url(host: HostConfig, repo: str, number: int) -> str:
    return f"{api_base(host.api_url, API_PATH)}/projects/{project_id(repo)}/merge_requests/{number}/notes"


def _headers(host: HostConfig) -> dict[str, str]:
    if host.token is None:
        raise ValueError(f"host {host.name!r} has no token: GitLab needs one to comment on merge requests")
    return json_headers(("PRIVATE-TOKEN", host.token.reveal()))


def build_list_request(host: HostConfig, repo: str, number: int, page: int) -> HttpRequest:
    """Page `page` of the merge request's notes, oldest first (GitLab's default is newest first)."""
    url = f"{_notes_url(host, repo, number)}?sort=asc&order_by=created_at&per_page={PAGE_SIZE}&page={page}"
    return HttpRequest("GET", url, headers=_headers(host))


def build_create_request(host: HostConfig, repo: str, number: int, body: str) -> HttpRequest:
    return HttpRequest("POST", _notes_url(host, repo, number), headers=_headers(host), json={"body": body})


def build_update_request(host: HostConfig, repo: str, number: int, comment_id: str, body: str) -> HttpRequest:
    return HttpRequest("PUT", f"{_notes_url(host, repo, number)}/{comment_id}", headers=_headers(host),
                       json={"body": body})


COMMENTS = CommentsApi(
    kinds=frozenset({"gitlab"}),
    list=build_list_request,
    create=build_create_request,
    update=build_update_request,
    page_size=PAGE_SIZE,
    permission_hint="if the token may not comment, give it the api scope and at least the Reporter role",
)

"""The pull request comment that shows a preview: one per app and pull request, edited in place.

A preview (SPEC §13) is announced on its pull request (GitHub, Gitea/Forgejo) or merge request
(GitLab) by one comment with its URL, commit and state. Each state change of the preview's
deployments edits that comment rather than adding one, and its teardown edits it once more to say
the preview was removed and why.

The comment is found by a hidden marker its body starts with (`<!-- hooksvc-preview:APP -->`):
the first event of a preview lists the pull request's comments (page by page where the host pages
them) and edits the marked one, or creates it when there is none. Its id is then kept in a small
Redis record (`keys.preview_comment`), so later events go straight to the edit. A body must *start*
with the marker: a reviewer quoting the comment (`> <!-- ...`) is never taken for it.

The events come through the outbox (kind `preview_comment`, one lane per preview); the sender
delivers them with the commit-status retries, asking `PreviewComments.prepare` for each next
request. Only the newest state matters to a comment that is rewritten whole, so an event with a
newer one behind it in the lane is skipped. The request builders of each host are in this package's
modules, each declaring `COMMENTS` (a `CommentsApi`); `COMMENT_APIS` is found from them, keyed by host
kind. Builders and the body are pure; `PreviewComments` holds the Redis side.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import redis

from hooksvc import keys
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.discovery import by_kind, declared
from hooksvc.outbox import OutboxEvent, append, preview_comment_lane
from hooksvc.providers import HOST_KINDS
from workers.http import HttpRequest, HttpResponse, PlannedRequest, id_in_answer, list_in_answer
from workers.statuses import describe_removal, one_line, truncate

#: The record outlives a pull request that stays open for weeks; each write renews it.
RECORD_TTL_SECONDS = 30 * 24 * 3600
#: A reason quoted in the comment is cut to this many characters (the deployment page has the rest).
REASON_LIMIT = 300



#: The teardown states the comment tells of: done, or failed (the preview still runs).
ENDED_TEARDOWN = frozenset({DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.ERROR})


def marker(app: str) -> str:
    """The hidden first line of the app's preview comment, by which it is found again."""
    return f"<!-- hooksvc-preview:{app} -->"


@dataclass(frozen=True)
class CommentView:
    """What the comment shows about one preview."""

    app: str
    number: int
    #: The preview's address; "" when it is not known.
    url: str
    sha: str
    state: DeploymentState
    #: The deployment's error or reason, one line, redacted; "" when there is none.
    reason: str
    #: Why the preview was torn down ("" while it lives).
    removed: str
    #: The deployment's page; "" when `[server] public_url` is not set.
    page_url: str
    deployment_id: str
    #: Refused before it ran (a fork's pull request): `reason` says why.
    refused: bool = False

    @property
    def gone(self) -> bool:
        """The preview was torn down: its teardown succeeded."""
        return bool(self.removed) and self.state is DeploymentState.SUCCEEDED


def _cell(text: str) -> str:
    """`text` safe in one Markdown table cell: one line, no column break, no HTML."""
    return one_line(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


#: The state cell's words per state, and whether the deployment's reason follows them.
STATE_WORDS: Mapping[DeploymentState, tuple[str, bool]] = {
    DeploymentState.QUEUED: ("**queued**", False),
    DeploymentState.WAITING_FOR_CHECKS: ("**waiting**", True),
    DeploymentState.HELD: ("**held**", True),
    DeploymentState.RUNNING: ("**deploying**", False),
    DeploymentState.SUCCEEDED: ("**live**", False),
    DeploymentState.FAILED: ("**failed**", True),
    DeploymentState.ERROR: ("**failed**", True),
    DeploymentState.SKIPPED: ("**not deployed**", True),
    DeploymentState.SUPERSEDED: ("**superseded** by a newer push", False),
    DeploymentState.CANCELLED: ("**cancelled** by an operator", False),
}


def state_text(view: CommentView) -> str:
    """The state cell: what a reviewer wants to know of the preview now."""
    if view.gone:
        return f"**removed**: {_cell(truncate(describe_removal(view.removed), REASON_LIMIT))}"
    if view.refused:
        words, with_reason = "**not built**", True
    elif view.removed:
        words, with_reason = "**removal failed**", True
    else:
        words, with_reason = STATE_WORDS[view.state]
    if with_reason and view.reason:
        return f"{words}: {_cell(truncate(view.reason, REASON_LIMIT))}"
    return words


def comment_body(view: CommentView) -> str:
    """The whole comment (Markdown), marker first."""
    rows = [("State", state_text(view))]
    if view.url and not view.gone and not view.refused:
        rows.append(("URL", _cell(view.url)))
    rows.append(("Commit", f"`{view.sha[:12]}`"))
    if view.page_url:
        rows.append(("Deployment", f"[{view.deployment_id}]({view.page_url})"))
    elif view.deployment_id:
        rows.append(("Deployment", view.deployment_id))
    footer = ("The preview and everything it ran were removed." if view.gone
              else "hooksvc edits this comment on each push to this pull request.")
    return "\n".join([
        marker(view.app),
        f"### Preview of `{view.app}`",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        f"_{footer}_",
        "",
    ])


@dataclass(frozen=True)
class CommentsApi:
    """What one module of `workers.preview_comments` declares as its `COMMENTS`: where a host keeps a
    pull request's comments and how it is asked; the requests are built here, alike for every host."""

    #: The host kinds (`[hosts.*] kind`) whose comments API it speaks.
    kinds: frozenset[str]
    #: The pull request's comments: listed (GET) and added to (POST) there.
    comments_url: Callable[[HostConfig, str, int], str]
    #: One comment, edited there (`edit_method`); the pull request number is given for hosts that need it.
    comment_url: Callable[[HostConfig, str, int, str], str]
    edit_method: str
    #: The query of page N of the list ("" when the host answers every comment at once).
    list_query: Callable[[int], str]
    #: Comments per page the list asks for; None when the host answers all of them at once.
    page_size: int | None
    headers: Callable[[HostConfig], dict[str, str]]
    #: Said with a refused request: the usual cause is a token that may not comment.
    permission_hint: str

    def list_request(self, host: HostConfig, repo: str, number: int, page: int) -> HttpRequest:
        query = self.list_query(page)
        url = self.comments_url(host, repo, number) + (f"?{query}" if query else "")
        return HttpRequest("GET", url, headers=self.headers(host))

    def create_request(self, host: HostConfig, repo: str, number: int, body: str) -> HttpRequest:
        return HttpRequest("POST", self.comments_url(host, repo, number), headers=self.headers(host),
                           json={"body": body})

    def update_request(self, host: HostConfig, repo: str, number: int, comment_id: str, body: str) -> HttpRequest:
        return HttpRequest(self.edit_method, self.comment_url(host, repo, number, comment_id),
                           headers=self.headers(host), json={"body": body})


@dataclass(frozen=True)
class CommentRecord:
    """What is known of one preview's comment."""

    #: The host's id of the comment ("" until it was found or created).
    comment_id: str = ""
    #: The next page of the pull request's comments to look through for the marker.
    page: int = 1
    #: True once every page was looked through without finding the marker: create it.
    searched: bool = False
    #: The outbox event the comment shows now.
    sent: str = ""

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> CommentRecord:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        page = fields.get("page", "1")
        return cls(comment_id=fields.get("comment_id", ""), page=int(page) if page.isdigit() else 1,
                   searched=fields.get("searched") == "1", sent=fields.get("sent", ""))


@dataclass(frozen=True)
class CommentStep:
    """The next request of a comment event, what it is called in the log, and what it records."""

    request: HttpRequest
    what: str
    #: The record's fields once the request was delivered, from its answer (ValueError: unusable).
    remember: Callable[[HttpResponse], Mapping[str, str]]


def marked_comment(answer: HttpResponse, mark: str) -> tuple[str | None, int]:
    """(the id of the first listed comment whose body starts with `mark`, or None; how many comments
    the page listed). ValueError when the answer is no list of comments."""
    listed = list_in_answer(answer, "comment")
    for comment in listed:
        if isinstance(comment, dict) and str(comment.get("body") or "").startswith(mark):
            found = comment.get("id")
            if isinstance(found, int) and not isinstance(found, bool) or isinstance(found, str) and found.isdigit():
                return str(found), len(listed)
    return None, len(listed)


def plan(api: CommentsApi, host: HostConfig, repo: str, view: CommentView, event: OutboxEvent,
         record: CommentRecord) -> CommentStep | None:
    """The next request `event` needs: edit the known comment, else look for it, else create it
    (unless the news is a removal); None once the comment shows `event`."""
    if record.sent == event.id:
        return None
    body = comment_body(view)
    where = f"{repo} #{view.number}"
    done = {"sent": event.id}
    if record.comment_id:
        return CommentStep(api.update_request(host, repo, view.number, record.comment_id, body),
                           f"preview comment {record.comment_id} on {where}: {_short(view)}", lambda _answer: done)
    if not record.searched:
        mark = marker(view.app)

        def found(answer: HttpResponse) -> Mapping[str, str]:
            comment_id, listed = marked_comment(answer, mark)
            if comment_id is not None:
                return {"comment_id": comment_id}
            if api.page_size is not None and listed >= api.page_size:
                return {"page": str(record.page + 1)}
            return {"searched": "1"}

        return CommentStep(api.list_request(host, repo, view.number, record.page),
                           f"preview comment on {where}: look for it (page {record.page})", found)
    if view.removed:
        return None  # a pull request that never showed a preview gets no comment saying it is gone
    return CommentStep(api.create_request(host, repo, view.number, body),
                       f"preview comment on {where}: create ({_short(view)})",
                       lambda answer: {"comment_id": id_in_answer(answer, "comment"), **done})


def _short(view: CommentView) -> str:
    return f"removal ({view.removed}) {view.state}" if view.removed else str(view.state)


class PreviewComments:
    """The Redis side: which comment shows a preview, and which event it shows."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def record(self, app: str, number: int) -> CommentRecord:
        return CommentRecord.from_hash(self.redis.hgetall(keys.preview_comment(app, number)))

    def prepare(self, host: HostConfig, repo: str, view: CommentView, event: OutboxEvent) -> PlannedRequest | None:
        """The next request of `event`; None when there is none: the host has no comments API here,
        the comment shows it already, or a newer event waits behind it (it rewrites the whole comment)."""
        api = COMMENT_APIS.get(host.kind)
        if api is None or event.preview is None or event.removed and event.state not in ENDED_TEARDOWN:
            return None  # a teardown superseded or cancelled by a newer push changed nothing
        record = self.record(event.app, event.preview)
        if record.sent != event.id and self.redis.llen(keys.outbox_lane(preview_comment_lane(event.app,
                                                                                              event.preview))) > 1:
            return None
        step = plan(api, host, repo, view, event, record)
        if step is None:
            return None
        return PlannedRequest(step.request, step.what, api.permission_hint,
                              delivered=lambda answer: self._update(event.app, event.preview or 0,
                                                                    step.remember(answer)),
                              dropped=lambda rejected: self._dropped(event, record, rejected))

    def _update(self, app: str, number: int, fields: Mapping[str, str]) -> None:
        key = keys.preview_comment(app, number)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=dict(fields))
            pipe.expire(key, RECORD_TTL_SECONDS)
            pipe.execute()

    def _dropped(self, event: OutboxEvent, record: CommentRecord, rejected: bool) -> None:
        """An edit the host refused (someone deleted the comment, or may edit it no longer): a new
        comment shows the preview from now on, made by this event again unless a newer one waits.
        Only a refused edit does so, and the next attempt creates: a refusal never loops."""
        if not (rejected and record.comment_id) or event.preview is None:
            return
        lane = preview_comment_lane(event.app, event.preview)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.preview_comment(event.app, event.preview))
            pipe.hset(keys.preview_comment(event.app, event.preview), mapping={"searched": "1"})
            pipe.expire(keys.preview_comment(event.app, event.preview), RECORD_TTL_SECONDS)
            pipe.execute()
        if self.redis.llen(keys.outbox_lane(lane)) == 0:
            with self.redis.pipeline(transaction=True) as pipe:
                append(pipe, lane, replace(event, id=uuid.uuid4().hex))
                pipe.execute()


def _by_kind(apis: list[CommentsApi]) -> dict[str, CommentsApi]:
    """kind -> its comments API; ValueError when two claim a kind or a kind is no host kind."""
    found = by_kind(apis, "comments APIs")
    if unknown := sorted(set(found) - set(HOST_KINDS)):
        raise ValueError(f"workers/preview_comments/ speaks to {unknown[0]!r}, which is no host kind")
    return found


#: Host kinds with a pull request comments API (GitHub, Gitea, Forgejo, GitLab) -> it.
COMMENT_APIS: Mapping[str, CommentsApi] = _by_kind(declared(__name__, __path__, "COMMENTS", CommentsApi))

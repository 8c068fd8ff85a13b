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

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis

from hooksvc import keys
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.discovery import declared
from hooksvc.outbox import OutboxEvent, preview_comment_lane
from hooksvc.providers import HOST_KINDS
from workers.http import HttpRequest, HttpResponse, id_in_answer
from workers.statuses import describe_removal, one_line, truncate

#: The record outlives a pull request that stays open for weeks; each write renews it.
RECORD_TTL_SECONDS = 30 * 24 * 3600
#: A reason quoted in the comment is cut to this many characters (the deployment page has the rest).
REASON_LIMIT = 300



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


def _cell(text: str) -> str:
    """`text` safe in one Markdown table cell: one line, no column break, no HTML."""
    return one_line(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def state_text(view: CommentView) -> str:
    """The state cell: what a reviewer wants to know of the preview now."""
    reason = _cell(truncate(view.reason, REASON_LIMIT)) if view.reason else ""
    if view.removed:
        return f"**removed**: {_cell(truncate(describe_removal(view.removed), REASON_LIMIT))}"
    match view.state:
        case DeploymentState.SUCCEEDED:
            return "**live**"
        case DeploymentState.RUNNING:
            return "**deploying**"
        case DeploymentState.FAILED | DeploymentState.ERROR:
            return f"**failed**: {reason}" if reason else "**failed**"
        case DeploymentState.SKIPPED:
            return f"**not deployed**: {reason}" if reason else "**not deployed**"
        case DeploymentState.SUPERSEDED:
            return "**superseded** by a newer push"
        case DeploymentState.CANCELLED:
            return "**cancelled** by an operator"
        case DeploymentState.HELD:
            return f"**held**: {reason}" if reason else "**held**"
        case _:
            return "**queued**"


def comment_body(view: CommentView) -> str:
    """The whole comment (Markdown), marker first."""
    rows = [("State", state_text(view))]
    if view.url and not view.removed:
        rows.append(("URL", _cell(view.url)))
    rows.append(("Commit", f"`{view.sha[:12]}`"))
    if view.page_url:
        rows.append(("Deployment", f"[{view.deployment_id}]({view.page_url})"))
    elif view.deployment_id:
        rows.append(("Deployment", view.deployment_id))
    footer = ("The preview and everything it ran were removed." if view.removed
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


class ListRequest(Protocol):
    def __call__(self, host: HostConfig, repo: str, number: int, page: int, /) -> HttpRequest:
        """The request for page `page` (from 1) of the pull request's comments."""


class CreateRequest(Protocol):
    def __call__(self, host: HostConfig, repo: str, number: int, body: str, /) -> HttpRequest:
        """The request that adds a comment with `body` to the pull request."""


class UpdateRequest(Protocol):
    def __call__(self, host: HostConfig, repo: str, number: int, comment_id: str, body: str, /) -> HttpRequest:
        """The request that replaces the body of comment `comment_id` with `body`."""


@dataclass(frozen=True)
class CommentsApi:
    """What one module of `workers.preview_comments` declares as its `COMMENTS`."""

    #: The host kinds (`[hosts.*] kind`) whose comments API it speaks.
    kinds: frozenset[str]
    list: ListRequest
    create: CreateRequest
    update: UpdateRequest
    #: Comments per page the list asks for; None when the host answers all of them at once.
    page_size: int | None
    #: Said with a refused request: the usual cause is a token that may not comment.
    permission_hint: str


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
    try:
        listed = json.loads(answer.body)
    except ValueError:
        raise ValueError("the comment list is not JSON") from None
    if not isinstance(listed, list):
        raise ValueError(f"the comment list is no JSON array (got {type(listed).__name__})")
    for comment in listed:
        if isinstance(comment, dict) and str(comment.get("body") or "").startswith(mark):
            found = comment.get("id")
            if isinstance(found, int) and not isinstance(found, bool) or isinstance(found, str) and found.isdigit():
                return str(found), len(listed)
    return None, len(listed)


def plan(api: CommentsApi, host: HostConfig, repo: str, view: CommentView, event: OutboxEvent,
         record: CommentRecord) -> CommentStep | None:
    """The next request `event` needs: edit the known comment, else look for it, else create it;
    None once the comment shows `event`."""
    if record.sent == event.id:
        return None
    body = comment_body(view)
    where = f"{repo} #{view.number}"
    done = {"sent": event.id}
    if record.comment_id:
        return CommentStep(api.update(host, repo, view.number, record.comment_id, body),
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

        return CommentStep(api.list(host, repo, view.number, record.page),
                           f"preview comment on {where}: look for it (page {record.page})", found)
    return CommentStep(api.create(host, repo, view.number, body),
                       f"preview comment on {where}: create ({_short(view)})",
                       lambda answer: {"comment_id": id_in_answer(answer, "comment"), **done})


def _short(view: CommentView) -> str:
    return f"removed ({view.removed})" if view.removed else str(view.state)


@dataclass(frozen=True)
class PlannedComment:
    """A step made ready for the outbox sender."""

    request: HttpRequest
    what: str
    hint: str
    delivered: Callable[[HttpResponse], None]
    dropped: Callable[[bool], None]


class PreviewComments:
    """The Redis side: which comment shows a preview, and which event it shows."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def record(self, app: str, number: int) -> CommentRecord:
        return CommentRecord.from_hash(self.redis.hgetall(keys.preview_comment(app, number)))

    def prepare(self, host: HostConfig, repo: str, view: CommentView, event: OutboxEvent) -> PlannedComment | None:
        """The next request of `event`; None when there is none: the host has no comments API here,
        the comment shows it already, or a newer event waits behind it (it rewrites the whole comment)."""
        api = COMMENT_APIS.get(host.kind)
        if api is None or event.preview is None:
            return None
        record = self.record(event.app, event.preview)
        if record.sent != event.id and self.redis.llen(keys.outbox_lane(preview_comment_lane(event.app,
                                                                                              event.preview))) > 1:
            return None
        step = plan(api, host, repo, view, event, record)
        if step is None:
            return None
        return PlannedComment(step.request, step.what, api.permission_hint,
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
        """An edit the host refused (the comment was deleted, say): the next event looks for it anew."""
        if rejected and record.comment_id and event.preview is not None:
            self.redis.delete(keys.preview_comment(event.app, event.preview))


def _by_kind(apis: list[CommentsApi]) -> dict[str, CommentsApi]:
    """kind -> its comments API; ValueError when two claim a kind or a kind is no host kind."""
    by_kind: dict[str, CommentsApi] = {}
    for api in apis:
        for kind in api.kinds:
            if kind in by_kind:
                raise ValueError(f"host kind {kind!r} has two comments APIs")
            if kind not in HOST_KINDS:
                raise ValueError(f"workers/preview_comments/ speaks to {kind!r}, which is no host kind")
            by_kind[kind] = api
    return by_kind


#: Host kinds with a pull request comments API (GitHub, Gitea, Forgejo, GitLab) -> it.
COMMENT_APIS: Mapping[str, CommentsApi] = _by_kind(declared(__name__, __path__, "COMMENTS", CommentsApi))

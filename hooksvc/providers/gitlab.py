"""GitLab webhooks: the secret itself in `X-Gitlab-Token`; nothing is signed.

Push and tag pushes come as two hook types (`Push Hook`, `Tag Push Hook`); both are a "push" here.
The repository is `project.path_with_namespace` (the top-level `repository` lacks the namespace).
"""

from __future__ import annotations

import hmac
from typing import Any

from hooksvc.ci_checks import CheckEvent, CheckState
from hooksvc.errors import BadRequest
from hooksvc.providers.base import (
    ZERO_SHA,
    HostKind,
    PreviewAction,
    Provider,
    PullRequestEvent,
    PushEvent,
    RefChange,
    WebhookDelivery,
    WebhookRequest,
)
from hooksvc.providers.payload import (
    check_report,
    delivery_id,
    json_body,
    normalised_event,
    read_number,
    read_ref,
    read_sha,
    repository_name,
    show,
)

ROUTE = "gitlab"
TOKEN_HEADER = "X-Gitlab-Token"  # noqa: S105 - a header name, not a credential
EVENT_HEADER = "X-Gitlab-Event"
# Idempotency-Key is stable across GitLab's retries and "Resend request" (17.4+), so it is preferred
# as the dedupe key; older GitLab only sends the per-event UUID.
DELIVERY_HEADERS = ("Idempotency-Key", "X-Gitlab-Event-UUID")

#: Hook type -> the `object_kind` its payload carries.
PUSH_HOOKS = {"push hook": "push", "tag push hook": "tag_push"}


def signed_bytes(req: WebhookRequest) -> bytes:
    """GitLab signs nothing: the token vouches for the whole raw body, which is what a replay repeats."""
    return req.body


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when `X-Gitlab-Token` equals `secret` (constant-time); the body plays no part."""
    given = req.header(TOKEN_HEADER)
    if not given or not secret:
        return False
    expected = secret.encode("utf-8")
    # WSGI servers hand header values over decoded as Latin-1 (PEP 3333), so a non-ASCII token sent as
    # UTF-8 bytes is recovered by encoding back to Latin-1; a caller that decoded UTF-8 needs the other
    # form. `|` rather than `or` keeps both compares running.
    # No "replace" error handler: it would turn any unencodable character into "?", and a secret
    # containing "?" would then accept tokens that are not it (found by the property test).
    wire = _encoded(given, "latin-1")
    text = _encoded(given, "utf-8")
    return hmac.compare_digest(wire, expected) | hmac.compare_digest(text, expected)


def _encoded(value: str, encoding: str) -> bytes:
    """`value` in `encoding`, or b"" (which matches no secret) when it has no such form."""
    try:
        return value.encode(encoding)
    except UnicodeEncodeError:
        return b""


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest.

    `signed` is the raw body, which is the payload: it is read from `req` either way.
    """
    hook = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_body(req)
    push = _read_push(hook, data) if hook in PUSH_HOOKS else None
    checks = pipeline_event(data) if hook == PIPELINE_HOOK else None
    merge_request = merge_request_event(data) if hook == MERGE_REQUEST_HOOK else None
    return WebhookDelivery(
        provider=ROUTE,
        event="push" if push is not None else hook,
        delivery_id=_delivery_id(req),
        repo=repository_name(data, required=push is not None or checks is not None or merge_request is not None,
                             container="project", key="path_with_namespace"),
        push=push,
        checks=checks,
        pull_request=merge_request,
    )


MERGE_REQUEST_HOOK = "merge request hook"
#: The merge-request actions a preview follows (webhook_events.md, "Merge request events"); the
#: approvals leave it as it is, and so does an `update` that changed no code (it has no `oldrev`).
MERGE_REQUEST_ACTIONS = {"open": PreviewAction.DEPLOY, "reopen": PreviewAction.DEPLOY, "update": PreviewAction.DEPLOY,
                         "close": PreviewAction.CLOSE, "merge": PreviewAction.CLOSE}


def merge_request_event(data: dict[str, Any]) -> PullRequestEvent:
    """A `Merge Request Hook`: merge request `iid`, what happened, its head and whether it comes from a fork."""
    where = "merge_request payload"
    attrs = data.get("object_attributes")
    if data.get("object_kind") != "merge_request" or not isinstance(attrs, dict):
        raise BadRequest(f"{where}: needs object_kind 'merge_request' and an 'object_attributes' object")
    action = attrs.get("action")
    if not isinstance(action, str):
        raise BadRequest(f"{where}: 'object_attributes.action' must be a string, got {show(action)}")
    preview = MERGE_REQUEST_ACTIONS.get(action, PreviewAction.NONE)
    if action == "update" and not attrs.get("oldrev"):
        preview = PreviewAction.NONE  # a title, label or assignee changed, not the code
    last = attrs.get("last_commit")
    if not isinstance(last, dict):
        raise BadRequest(f"{where}: 'object_attributes.last_commit' must be an object, got {show(last)}")
    source, target = attrs.get("source_project_id"), attrs.get("target_project_id")
    branch = attrs.get("source_branch")
    return PullRequestEvent(
        number=read_number(attrs, "iid", where),
        action=preview,
        host_action=action,
        head_sha=read_sha(last, "id", where=f"{where} object_attributes.last_commit"),
        # A deleted source project has no id: its head can only have come from elsewhere.
        fork=source is None or source != target,
        head_branch=branch if isinstance(branch, str) else "",
    )


PIPELINE_HOOK = "pipeline hook"
#: What a pipeline is called in `require_checks` when it has no `name` (`workflow:name`).
PIPELINE_CHECK_NAME = "pipeline"
#: Pipeline statuses that end it. `skipped` and `canceled` do not pass: as with GitLab's own "Pipelines
#: must succeed", only `success` lets a deploy through. A `manual` pipeline waits for a person.
_PIPELINE_STATES = {"success": CheckState.SUCCESS, "failed": CheckState.FAILURE,
                    "canceled": CheckState.FAILURE, "skipped": CheckState.FAILURE}
_PIPELINE_RUNNING = frozenset({"created", "waiting_for_resource", "preparing", "pending", "running", "manual",
                               "scheduled", "waiting_for_callback"})


def pipeline_state(status: object) -> CheckState | None:
    if status in _PIPELINE_RUNNING:
        return CheckState.PENDING
    return _PIPELINE_STATES.get(status) if isinstance(status, str) else None


def pipeline_name(name: object) -> str:
    """The check name of a pipeline: its `name` when it has one, else "pipeline"."""
    return name if isinstance(name, str) and name.strip() else PIPELINE_CHECK_NAME


def pipeline_event(data: dict[str, Any]) -> CheckEvent:
    """A `Pipeline Hook`: the pipeline of `object_attributes.sha` and how it stands."""
    attrs = data.get("object_attributes")
    where = "pipeline payload"
    if data.get("object_kind") != "pipeline" or not isinstance(attrs, dict):
        raise BadRequest(f"{where}: needs object_kind 'pipeline' and an 'object_attributes' object")
    sha = read_sha(attrs, "sha", where=where)
    report = check_report(pipeline_name(attrs.get("name")), pipeline_state(attrs.get("status")), attrs.get("url"),
                          where)
    return CheckEvent(sha=sha, reports=(report,))


def _read_push(hook: str, data: dict[str, Any]) -> PushEvent:
    kind = data.get("object_kind")
    if kind != PUSH_HOOKS[hook]:
        raise BadRequest(
            f"{EVENT_HEADER} {hook!r} needs object_kind {PUSH_HOOKS[hook]!r} in the payload, got {show(kind)}"
        )
    ref = read_ref(data)
    after = read_sha(data, "after")
    before = read_sha(data, "before") if "before" in data else ""
    # GitLab nulls `checkout_sha` when the ref is removed. For an annotated tag `after` is the tag
    # object while `checkout_sha` is the tagged commit: the one a release checks out and a status names.
    deleted = after == ZERO_SHA or ("checkout_sha" in data and data["checkout_sha"] is None)
    if not deleted and "checkout_sha" in data:
        after = read_sha(data, "checkout_sha")
    return PushEvent((RefChange(ref=ref, before=before, after=after, deleted=deleted, forced=False),))


def _delivery_id(req: WebhookRequest) -> str:
    for header in DELIVERY_HEADERS:
        value = req.header(header)
        if value and value.strip():
            return delivery_id(header, value)
    return ""


PROVIDER = Provider(
    route=ROUTE,
    # GitLab accepts `oauth2` for personal, project and OAuth tokens (a deploy token needs its own
    # user name in the clone URL).
    kinds=(HostKind("gitlab", checks=True, pull_head_ref="refs/merge-requests/{number}/head"),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

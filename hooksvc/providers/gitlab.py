"""GitLab webhooks: the secret itself in `X-Gitlab-Token`; nothing is signed.

Push and tag pushes come as two hook types (`Push Hook`, `Tag Push Hook`); both are a "push" here.
The repository is `project.path_with_namespace` (the top-level `repository` lacks the namespace).
"""

from __future__ import annotations

import hmac
from typing import Any

from hooksvc.errors import BadRequest
from hooksvc.providers.base import ZERO_SHA, HostKind, Provider, PushEvent, RefChange, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    delivery_id,
    json_body,
    normalised_event,
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
    return WebhookDelivery(
        provider=ROUTE,
        event="push" if push is not None else hook,
        delivery_id=_delivery_id(req),
        repo=repository_name(data, required=push is not None, container="project", key="path_with_namespace"),
        push=push,
    )


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
    kinds=(HostKind("gitlab"),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

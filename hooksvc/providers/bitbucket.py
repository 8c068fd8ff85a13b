"""Bitbucket Cloud webhooks: `X-Hub-Signature` (`sha256=` + HMAC-SHA256 of the raw body).

A `repo:push` delivery carries every ref the push moved, in `push.changes[]`: each change has the
ref's state before (`old`) and after (`new`), either of them null when the ref was created or
deleted (`created`, `closed`), and whether it was `forced`. The payload has no full ref names,
only a `type` (`branch`, `tag`) and a `name`, and no clone URLs: the app's `clone_url` is used.
A hook without a secret sends no signature; hooksvc accepts signed deliveries only.
"""

from __future__ import annotations

from typing import Any

from hooksvc.errors import BadRequest
from hooksvc.providers.base import ZERO_SHA, HostKind, Provider, PushEvent, RefChange, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    BodySignature,
    delivery_id,
    json_body,
    normalised_event,
    read_flag,
    read_ref,
    read_sha,
    repository_name,
    show,
)

ROUTE = "bitbucket"
SIGNATURE_HEADER = "X-Hub-Signature"
SIGNATURE_PREFIX = "sha256="
EVENT_HEADER = "X-Event-Key"
# X-Request-UUID names one delivery; Bitbucket's own retries of it (after a 5xx) keep it.
DELIVERY_HEADER = "X-Request-UUID"
PUSH_EVENT = "repo:push"
#: A change's ref `type` -> where git keeps such refs.
REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}


#: Bitbucket signs the request body exactly as sent, as GitHub does (under another header name).
SIGNATURE = BodySignature(SIGNATURE_HEADER, SIGNATURE_PREFIX)
signed_bytes = SIGNATURE.signed_bytes
verify = SIGNATURE.verify


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for `repo:push`) every ref change. Raises BadRequest.

    `signed` is the raw body, which is the payload: it is read from `req` either way.
    """
    event = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_body(req)
    push = _read_push(data) if event == PUSH_EVENT else None
    return WebhookDelivery(
        provider=ROUTE,
        event="push" if push is not None else event,
        delivery_id=delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER)),
        repo=repository_name(data, required=push is not None),
        push=push,
    )


def _read_push(data: dict[str, Any]) -> PushEvent:
    push = data.get("push")
    changes = push.get("changes") if isinstance(push, dict) else None
    if not isinstance(changes, list):
        raise BadRequest(f"push payload: 'push.changes' must be a list of ref changes, got {show(changes)}")
    return PushEvent(tuple(_read_change(change, f"push.changes[{i}]") for i, change in enumerate(changes)))


def _read_change(change: object, where: str) -> RefChange:
    if not isinstance(change, dict):
        raise BadRequest(f"push payload: {where!r} must be an object, got {show(change)}")
    new, old = change.get("new"), change.get("old")
    if new is None and old is None:
        raise BadRequest(f"push payload: {where!r} has neither 'new' nor 'old': no ref to read")
    closed = new is None or read_flag(change, "closed")
    ref = _ref(new if new is not None else old, f"{where}.{'new' if new is not None else 'old'}")
    return RefChange(
        ref=ref,
        before=ZERO_SHA if old is None else _target(old, f"{where}.old"),
        after=ZERO_SHA if closed else _target(new, f"{where}.new"),
        deleted=closed,
        forced=read_flag(change, "forced"),
    )


def _ref(state: object, where: str) -> str:
    """The full ref of a change's `new` or `old` (`refs/heads/<name>` for a branch)."""
    if not isinstance(state, dict):
        raise BadRequest(f"push payload: {where!r} must be an object or null, got {show(state)}")
    kind, name = state.get("type"), state.get("name")
    if not isinstance(kind, str) or kind not in REF_PREFIXES:  # a list or object is unhashable
        raise BadRequest(f"push payload: '{where}.type' must be 'branch' or 'tag', got {show(kind)}")
    if not isinstance(name, str):
        raise BadRequest(f"push payload: '{where}.name' must be the ref's name, got {show(name)}")
    key = f"{where}.name"  # the error names the payload's key, quoting the full ref it makes
    return read_ref({key: REF_PREFIXES[kind] + name}, key)


def _target(state: object, where: str) -> str:
    """The commit a change's `new` or `old` points to (`target.hash`)."""
    target = state.get("target") if isinstance(state, dict) else None
    if not isinstance(target, dict):
        raise BadRequest(f"push payload: '{where}.target' must be the commit, got {show(target)}")
    return read_sha(target, "hash", where=f"push payload {where}.target")


PROVIDER = Provider(
    route=ROUTE,
    # Repository, project and workspace access tokens clone over HTTPS with this user name.
    kinds=(HostKind("bitbucket", clone_user="x-token-auth", status_link=True),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

"""Gitea and Forgejo webhooks: bare-hex HMAC-SHA256 of the JSON payload text.

Unlike GitHub, these hosts sign the JSON text itself, not the HTTP body: for a form-encoded POST or a
GET with `?payload=` the signed bytes are the decoded `payload` value. The payload format is GitHub's
without the `created`/`deleted`/`forced` flags, so the readers of `hooksvc.providers.github` serve here.
"""

from __future__ import annotations

from dataclasses import replace

from hooksvc.errors import BadRequest
from hooksvc.providers.base import HostKind, PreviewAction, Provider, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    commit_status_event,
    delivery_id,
    github_shaped_delivery,
    github_shaped_pull_request,
    json_object,
    normalised_event,
    payload_signatures_match,
    posted_payload,
    repository_name,
)

ROUTE = "gitea"
# Forgejo sends its own headers on top of Gitea's, with the same values; either may be alone.
SIGNATURE_HEADERS = ("X-Forgejo-Signature", "X-Gitea-Signature")
EVENT_HEADERS = ("X-Forgejo-Event", "X-Gitea-Event")
DELIVERY_HEADERS = ("X-Forgejo-Delivery", "X-Gitea-Delivery")


def signed_bytes(req: WebhookRequest) -> bytes:
    """The JSON payload text as the host signed it. Raises BadRequest when there is none."""
    if req.method.upper() == "GET":
        payload = req.query.get("payload")
        if payload is None:
            raise BadRequest("GET delivery without a 'payload' query parameter")
        return payload.encode("utf-8")
    return posted_payload(req)


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when every signature header the host sent is the HMAC-SHA256 of the payload text."""
    return payload_signatures_match(req, SIGNATURE_HEADERS, secret, signed, signed_bytes)


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest."""
    event = normalised_event(" or ".join(EVENT_HEADERS), _first_header(req, EVENT_HEADERS))
    data = json_object(signed if signed is not None else signed_bytes(req))
    delivery = delivery_id(" or ".join(DELIVERY_HEADERS), _first_header(req, DELIVERY_HEADERS))
    # Gitea reports a branch deletion only as a `delete` event; a push with a zero `after` is a tag
    # deletion, and the lack of a `forced` flag is left to the worker's ancestry check.
    parsed = github_shaped_delivery(ROUTE, event, delivery, data, flags=False)
    if event == "status":
        # A commit status, shaped as GitHub's `status` event (sha, context, state, target_url).
        return replace(parsed, repo=repository_name(data, required=True),
                       checks=commit_status_event(data, "status payload"))
    if event == PULL_REQUEST_EVENT:
        return replace(parsed, repo=repository_name(data, required=True),
                       pull_request=github_shaped_pull_request(data, PULL_REQUEST_ACTIONS))
    return parsed


#: Gitea sends label, assignee, milestone and review changes as events of their own
#: (`pull_request_label`, ...); `pull_request` itself carries these actions and `edited`.
PULL_REQUEST_EVENT = "pull_request"
#: Gitea's and Forgejo's spelling of GitHub's `synchronize` is `synchronized` (modules/structs/hook.go,
#: HookIssueSynchronized); a merge is `closed` with `merged: true`.
PULL_REQUEST_ACTIONS = {"opened": PreviewAction.DEPLOY, "reopened": PreviewAction.DEPLOY,
                        "synchronized": PreviewAction.DEPLOY, "closed": PreviewAction.CLOSE}
#: Gitea and Forgejo keep pull request N's head where GitHub does.
PULL_HEAD_REF = "refs/pull/{number}/head"


def _first_header(req: WebhookRequest, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = req.header(name)
        if value and value.strip():
            return value
    return None


PROVIDER = Provider(
    route=ROUTE,
    #: Forgejo is a Gitea fork and signs and sends its webhooks the same way.
    kinds=(HostKind("gitea", checks=True, pull_head_ref=PULL_HEAD_REF),
           HostKind("forgejo", checks=True, pull_head_ref=PULL_HEAD_REF)),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
    # Only Gitea and Forgejo deliver with GET (`?payload=`).
    methods=frozenset({"POST", "GET"}),
)

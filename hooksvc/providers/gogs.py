"""Gogs webhooks: `X-Gogs-Signature`, the bare-hex HMAC-SHA256 of the JSON payload text.

Gitea began as a Gogs fork, and the two still share the push payload (without Gitea's
`head_commit` and `total_commits`) and the signature scheme; Gogs POSTs only, JSON or a form's
`payload` field. Gogs sends a `push` for branch pushes only: a tag push is a `create` event, and
deletions are `delete` events, none of which deploy. Gogs has no commit-status API, so its apps
are followed on hooksvc's own pages.
"""

from __future__ import annotations

from hooksvc.providers.base import HostKind, Provider, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    delivery_id,
    github_shaped_delivery,
    json_object,
    normalised_event,
    payload_signatures_match,
    posted_payload,
)

ROUTE = "gogs"
SIGNATURE_HEADER = "X-Gogs-Signature"
EVENT_HEADER = "X-Gogs-Event"
DELIVERY_HEADER = "X-Gogs-Delivery"


def signed_bytes(req: WebhookRequest) -> bytes:
    """The JSON payload text as Gogs signed it: the body, or a form body's `payload` field."""
    return posted_payload(req)


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when `X-Gogs-Signature` is the HMAC-SHA256 of the payload text under `secret`."""
    return payload_signatures_match(req, (SIGNATURE_HEADER,), secret, signed, signed_bytes)


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest."""
    event = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_object(signed if signed is not None else signed_bytes(req))
    delivery = delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER))
    # No flags, as for Gitea: a rewrite of history is left to the worker's ancestry check.
    return github_shaped_delivery(ROUTE, event, delivery, data, flags=False)


PROVIDER = Provider(
    route=ROUTE,
    kinds=(HostKind("gogs", statuses=False),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

"""GitHub and GitHub Enterprise webhooks: `X-Hub-Signature-256` over the raw request body."""

from __future__ import annotations

import hmac

from hooksvc.errors import BadRequest
from hooksvc.providers.base import WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    delivery_id,
    form_payload,
    header_bytes,
    hmac_sha256_hex,
    json_object,
    normalised_event,
    read_push,
    repository_name,
    unsupported_content_type,
)

PROVIDER = "github"
HOST_KINDS = frozenset({"github"})
SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"


def signed_bytes(req: WebhookRequest) -> bytes:
    """GitHub signs the request body exactly as sent, also when it is form-encoded."""
    return req.body


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body under `secret`."""
    given = req.header(SIGNATURE_HEADER)
    if not given or not secret:
        return False
    expected = SIGNATURE_PREFIX + hmac_sha256_hex(secret, signed if signed is not None else signed_bytes(req))
    return hmac.compare_digest(header_bytes(given), expected.encode("ascii"))


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest.

    `signed` is the raw body, which `req` holds anyway: the payload is the body itself or, when
    form-encoded, its `payload` field.
    """
    event = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_object(_payload_text(req))
    push = read_push(data, flags=True) if event == "push" else None
    return WebhookDelivery(
        provider=PROVIDER,
        event=event,
        delivery_id=delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER)),
        repo=repository_name(data, required=push is not None),
        push=push,
    )


def _payload_text(req: WebhookRequest) -> bytes:
    if req.content_type == JSON_CONTENT_TYPE:
        return req.body
    if req.content_type == FORM_CONTENT_TYPE:
        return form_payload(req.body).encode("utf-8")
    raise BadRequest(unsupported_content_type(req.content_type))

"""Gitea and Forgejo webhooks: bare-hex HMAC-SHA256 of the JSON payload text.

Unlike GitHub, these hosts sign the JSON text itself, not the HTTP body: for a form-encoded POST or a
GET with `?payload=` the signed bytes are the decoded `payload` value. The payload format is GitHub's
without the `created`/`deleted`/`forced` flags, so the readers of `hooksvc.providers.github` serve here.
"""

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

PROVIDER = "gitea"
#: Forgejo is a Gitea fork and signs and sends its webhooks the same way.
HOST_KINDS = frozenset({"gitea", "forgejo"})
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
    if req.content_type == JSON_CONTENT_TYPE:
        return req.body
    if req.content_type == FORM_CONTENT_TYPE:
        return form_payload(req.body).encode("utf-8")
    raise BadRequest(unsupported_content_type(req.content_type))


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when every signature header the host sent is the HMAC-SHA256 of the payload text."""
    # Gitea sends the headers empty when the hook has no secret: present is not the same as signed.
    given = [value for name in SIGNATURE_HEADERS if (value := req.header(name))]
    if not given or not secret:
        return False
    if signed is None:
        try:
            signed = signed_bytes(req)
        except BadRequest:
            return False
    expected = hmac_sha256_hex(secret, signed).encode("ascii")
    return all(hmac.compare_digest(header_bytes(value), expected) for value in given)


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest."""
    event = normalised_event(" or ".join(EVENT_HEADERS), _first_header(req, EVENT_HEADERS))
    data = json_object(signed if signed is not None else signed_bytes(req))
    # Gitea reports a branch deletion only as a `delete` event; a push with a zero `after` is a tag
    # deletion, and the lack of a `forced` flag is left to the worker's ancestry check.
    push = read_push(data, flags=False) if event == "push" else None
    return WebhookDelivery(
        provider=PROVIDER,
        event=event,
        delivery_id=delivery_id(" or ".join(DELIVERY_HEADERS), _first_header(req, DELIVERY_HEADERS)),
        repo=repository_name(data, required=push is not None),
        push=push,
    )


def _first_header(req: WebhookRequest, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = req.header(name)
        if value and value.strip():
            return value
    return None

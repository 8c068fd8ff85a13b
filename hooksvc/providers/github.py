"""GitHub and GitHub Enterprise webhooks: `X-Hub-Signature-256` over the raw request body."""

from __future__ import annotations

from hooksvc.providers.base import HostKind, Provider, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    BodySignature,
    delivery_id,
    github_shaped_delivery,
    json_object,
    normalised_event,
    posted_payload,
)

ROUTE = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"


#: GitHub signs the request body exactly as sent, also when it is form-encoded.
SIGNATURE = BodySignature(SIGNATURE_HEADER, SIGNATURE_PREFIX)
signed_bytes = SIGNATURE.signed_bytes
verify = SIGNATURE.verify


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest.

    `signed` is the raw body, which `req` holds anyway: the payload is the body itself or, when
    form-encoded, its `payload` field.
    """
    event = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_object(posted_payload(req))
    delivery = delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER))
    return github_shaped_delivery(ROUTE, event, delivery, data, flags=True)


PROVIDER = Provider(
    route=ROUTE,
    # GitHub wants `x-access-token` as the user name of an app installation token (and ignores the
    # name for personal tokens).
    kinds=(HostKind("github", clone_user="x-access-token"),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

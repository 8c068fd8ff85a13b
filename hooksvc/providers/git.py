"""Plain git servers: a bare repository's `post-receive` hook (`hooksvc git-hook install`) sends each
pushed ref, signed with `X-Hooksvc-Signature-256` (`sha256=` + HMAC-SHA256 of the raw body).

There is no forge here, so hooksvc defines the payload itself, one ref per request:

    {"delivery": "<uuid>", "repository": "<the app's repo>", "ref": "refs/heads/main",
     "before": "<old sha>", "after": "<new sha>", "forced": false}

The delivery id is inside the signed body (a header could be changed by anyone replaying it), and
it makes every push distinct: pushing a branch back and forth to the same commits deploys each time,
while a replayed request is a duplicate.
"""

from __future__ import annotations

import hmac

from hooksvc.errors import BadRequest
from hooksvc.providers.base import ZERO_SHA, PushEvent, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    JSON_CONTENT_TYPE,
    delivery_id,
    header_bytes,
    hmac_sha256_hex,
    json_object,
    read_flag,
    read_ref,
    read_sha,
    show,
)

PROVIDER = "git"
HOST_KINDS = frozenset({"git"})
SIGNATURE_HEADER = "X-Hooksvc-Signature-256"
SIGNATURE_PREFIX = "sha256="


def signed_bytes(req: WebhookRequest) -> bytes:
    """The raw body, as the hook signed it."""
    return req.body


def sign(secret: str, body: bytes) -> str:
    """The `X-Hooksvc-Signature-256` value for `body`: what the hook sends."""
    return SIGNATURE_PREFIX + hmac_sha256_hex(secret, body)


def verify(req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
    """True when `X-Hooksvc-Signature-256` is the HMAC-SHA256 of the raw body under `secret`."""
    given = req.header(SIGNATURE_HEADER)
    if not given or not secret:
        return False
    expected = sign(secret, signed if signed is not None else signed_bytes(req))
    return hmac.compare_digest(header_bytes(given), expected.encode("ascii"))


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The pushed ref and the repository. Raises BadRequest."""
    if req.content_type != JSON_CONTENT_TYPE:
        raise BadRequest(f"unsupported content type {show(req.content_type)}: expected {JSON_CONTENT_TYPE}")
    data = json_object(req.body)
    repo = data.get("repository")
    if not isinstance(repo, str) or not repo.strip():
        raise BadRequest(f"push payload: 'repository' must name the repository, got {show(repo)}")
    after = read_sha(data, "after")
    push = PushEvent(
        ref=read_ref(data),
        before=read_sha(data, "before"),
        after=after,
        deleted=after == ZERO_SHA,
        forced=read_flag(data, "forced"),
    )
    given_id = data.get("delivery")
    return WebhookDelivery(
        provider=PROVIDER,
        event="push",
        delivery_id=delivery_id("'delivery'", given_id if isinstance(given_id, str) else None),
        repo=repo.strip(),
        push=push,
    )

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

from hooksvc.errors import BadRequest
from hooksvc.providers.base import ZERO_SHA, HostKind, Provider, PushEvent, RefChange, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    BodySignature,
    delivery_id,
    json_body,
    read_flag,
    read_ref,
    read_sha,
    show,
)

ROUTE = "git"
SIGNATURE_HEADER = "X-Hooksvc-Signature-256"
SIGNATURE_PREFIX = "sha256="


SIGNATURE = BodySignature(SIGNATURE_HEADER, SIGNATURE_PREFIX)
signed_bytes = SIGNATURE.signed_bytes
#: The `X-Hooksvc-Signature-256` value for a body: what the hook sends.
sign = SIGNATURE.sign
verify = SIGNATURE.verify


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The pushed ref and the repository. Raises BadRequest."""
    data = json_body(req)
    repo = data.get("repository")
    if not isinstance(repo, str) or not repo.strip():
        raise BadRequest(f"push payload: 'repository' must name the repository, got {show(repo)}")
    after = read_sha(data, "after")
    push = PushEvent((RefChange(
        ref=read_ref(data),
        before=read_sha(data, "before"),
        after=after,
        deleted=after == ZERO_SHA,
        forced=read_flag(data, "forced"),
    ),))
    given_id = data.get("delivery")
    return WebhookDelivery(
        provider=ROUTE,
        event="push",
        delivery_id=delivery_id("'delivery'", given_id if isinstance(given_id, str) else None),
        repo=repo.strip(),
        push=push,
    )


PROVIDER = Provider(
    route=ROUTE,
    # A plain git server has no API: nothing posts back, and the dashboard is the status page.
    kinds=(HostKind("git", statuses=False),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

"""Bitbucket Data Center (formerly Server) webhooks: `X-Hub-Signature` (`sha256=` + HMAC-SHA256 of
the raw body).

A push is `repo:refs_changed`, whose `changes[]` lists every ref it moved: the full ref (`ref.id`),
`fromHash`, `toHash` and a `type` of ADD, UPDATE or DELETE. There is no forced flag: whether an
update rewrote history is left to the worker's ancestry check, as for Gitea. The repository is
named `PROJECT/slug` (`repository.project.key` and `repository.slug`), as the REST API names it.
"Test connection" in the webhook settings sends `diagnostics:ping`.
"""

from __future__ import annotations

from typing import Any

from hooksvc.errors import BadRequest
from hooksvc.providers import bitbucket
from hooksvc.providers.base import ZERO_SHA, HostKind, Provider, PushEvent, RefChange, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    delivery_id,
    json_body,
    normalised_event,
    read_ref,
    read_sha,
    show,
)

ROUTE = "bitbucket-server"
EVENT_HEADER = "X-Event-Key"
DELIVERY_HEADER = "X-Request-Id"
#: Event key -> hooksvc's event name; any other key keeps its own name.
EVENTS = {"repo:refs_changed": "push", "diagnostics:ping": "ping"}
CHANGE_TYPES = frozenset({"ADD", "UPDATE", "DELETE"})


#: Data Center signs as Bitbucket Cloud does.
SIGNATURE = bitbucket.SIGNATURE
signed_bytes = SIGNATURE.signed_bytes
verify = SIGNATURE.verify


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for `repo:refs_changed`) every ref change. Raises BadRequest.

    `signed` is the raw body, which is the payload: it is read from `req` either way.
    """
    key = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    event = EVENTS.get(key, key)
    data = json_body(req)
    push = _read_push(data) if event == "push" else None
    return WebhookDelivery(
        provider=ROUTE,
        event=event,
        delivery_id=delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER)),
        repo=_repository(data, required=push is not None),
        push=push,
    )


def _repository(data: dict[str, Any], *, required: bool) -> str:
    """`PROJECT/slug`; "" when the payload names none and none is required (a ping)."""
    repo = data.get("repository")
    project = repo.get("project") if isinstance(repo, dict) else None
    key = project.get("key") if isinstance(project, dict) else None
    slug = repo.get("slug") if isinstance(repo, dict) else None
    if isinstance(key, str) and key.strip() and isinstance(slug, str) and slug.strip():
        return f"{key.strip()}/{slug.strip()}"
    if required:
        raise BadRequest(
            f"push payload: 'repository.project.key' and 'repository.slug' must name the repository, "
            f"got {show(key)} and {show(slug)}"
        )
    return ""


def _read_push(data: dict[str, Any]) -> PushEvent:
    changes = data.get("changes")
    if not isinstance(changes, list):
        raise BadRequest(f"push payload: 'changes' must be a list of ref changes, got {show(changes)}")
    return PushEvent(tuple(_read_change(change, f"changes[{i}]") for i, change in enumerate(changes)))


def _read_change(change: object, where: str) -> RefChange:
    if not isinstance(change, dict):
        raise BadRequest(f"push payload: {where!r} must be an object, got {show(change)}")
    kind = change.get("type")
    if not isinstance(kind, str) or kind not in CHANGE_TYPES:  # a list or object is unhashable
        raise BadRequest(f"push payload: '{where}.type' must be ADD, UPDATE or DELETE, got {show(kind)}")
    ref_info = change.get("ref")
    # `ref.id` is the full ref; older payloads may carry only `refId`. The error names the key.
    key = f"{where}.ref.id" if isinstance(ref_info, dict) else f"{where}.refId"
    ref = read_ref({key: ref_info.get("id") if isinstance(ref_info, dict) else change.get("refId")}, key)
    after = read_sha(change, "toHash", where=f"push payload {where}")
    return RefChange(
        ref=ref,
        before=read_sha(change, "fromHash", where=f"push payload {where}"),
        after=after,
        deleted=kind == "DELETE" or after == ZERO_SHA,
        forced=False,
    )


PROVIDER = Provider(
    route=ROUTE,
    kinds=(HostKind("bitbucket-server", status_link=True),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

"""What every git host provider works with: the request in, the parsed delivery out, and the
`Provider` contract each host's module fulfils (mypy checks every module against it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: The all-zero sha hosts use for "no commit" (`after` of a deleted ref, `before` of a new one).
ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class WebhookRequest:
    """What the HTTP layer hands a provider: headers with lower-case names, the raw body, the query."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]
    method: str = "POST"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        # Header values may be secrets (GitLab sends its token verbatim): show only the names.
        return f"WebhookRequest(method={self.method!r}, headers={sorted(self.headers)!r}, body={len(self.body)} bytes)"

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class PushEvent:
    """A ref update: branch or tag push, or deletion."""

    ref: str
    before: str
    after: str
    deleted: bool
    forced: bool


@dataclass(frozen=True)
class WebhookDelivery:
    """One parsed webhook delivery."""

    provider: str
    #: Normalised event: "push" (branch or tag), "ping", or the host's own name for anything else.
    event: str
    delivery_id: str
    #: Repository as the payload names it (`owner/name`), "" when the event carries none.
    repo: str
    push: PushEvent | None = None


class Provider(Protocol):
    """A git host's webhooks: one module per host (`github`, `gitea`, `gitlab`), pure functions.

    The web layer verifies before it trusts anything parsed.
    """

    @property
    def PROVIDER(self) -> str:  # noqa: N802 - a module constant in each provider
        """The webhook route, `/hooks/<PROVIDER>`."""

    @property
    def HOST_KINDS(self) -> frozenset[str]:  # noqa: N802 - a module constant in each provider
        """The `kind`s of `[hosts.*]` whose apps this route serves."""

    def signed_bytes(self, req: WebhookRequest) -> bytes:
        """The exact bytes the host signs (BadRequest when they cannot be found).

        What a replay repeats: the web layer computes them once per request and passes them as
        `signed` to `verify` and `parse`, so a request costs one extraction however many secrets
        it is checked against.
        """

    def verify(self, req: WebhookRequest, secret: str, signed: bytes | None = None) -> bool:
        """Constant-time check of the request against one secret (`signed`: `signed_bytes(req)`, if known)."""

    def parse(self, req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
        """The event, delivery id, repository and push facts (BadRequest when malformed)."""

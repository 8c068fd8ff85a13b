"""Git host providers: one module per host, pure functions over a `WebhookRequest`.

Each provider module exposes:

- ``signed_bytes(req) -> bytes``: the exact bytes the host signs (Gitea's raises BadRequest when the
  payload text cannot be found);
- ``verify(req, secret) -> bool``: constant-time check of the request against one secret;
- ``parse(req) -> Delivery``: the event, delivery id, repository and push facts (raises BadRequest).

The web layer verifies before it trusts anything parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
class Delivery:
    """One parsed webhook delivery."""

    provider: str
    #: Normalised event: "push" (branch or tag), "ping", or the host's own name for anything else.
    event: str
    delivery_id: str
    #: Repository as the payload names it (`owner/name`), "" when the event carries none.
    repo: str
    push: PushEvent | None = None


# The registry comes last: the provider modules import the classes above from this package.
from types import ModuleType  # noqa: E402

from hooksvc.providers import gitea, github, gitlab  # noqa: E402

#: Webhook route name -> (provider module, host kinds whose apps it serves).
ROUTES: dict[str, tuple[ModuleType, frozenset[str]]] = {
    "github": (github, frozenset({"github"})),
    "gitea": (gitea, frozenset({"gitea", "forgejo"})),
    "gitlab": (gitlab, frozenset({"gitlab"})),
}

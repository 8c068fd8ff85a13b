"""Git host providers: one module per host, each declaring a `Provider`, and the host registry.

The registry is the one list of webhook routes and host kinds: `config` checks `[hosts.*] kind`
against it, the web layer routes `/hooks/<route>` by it, the workers take each kind's clone user
name from it, and `workers.statuses` keys its reporters by the same kind names. A module of this
package that sets `PROVIDER` is a host; adding one is adding its module (docs/architecture.md,
"Adding a git host").
"""

from __future__ import annotations

from collections.abc import Mapping

from hooksvc.discovery import declared
from hooksvc.providers.base import (
    ZERO_SHA,
    HostKind,
    PreviewAction,
    Provider,
    PullRequestEvent,
    PushEvent,
    RefChange,
    WebhookDelivery,
    WebhookRequest,
)


def _by_route(providers: tuple[Provider, ...]) -> dict[str, Provider]:
    routes: dict[str, Provider] = {}
    for provider in providers:
        if provider.route in routes:
            raise ValueError(f"two providers declare the webhook route /hooks/{provider.route}")
        routes[provider.route] = provider
    return routes


def _by_kind(providers: tuple[Provider, ...]) -> dict[str, HostKind]:
    kinds: dict[str, HostKind] = {}
    for provider in providers:
        for kind in provider.kinds:
            if kind.name in kinds:
                raise ValueError(f"host kind {kind.name!r} is declared by two providers")
            kinds[kind.name] = kind
    return kinds


_PROVIDERS = tuple(declared(__name__, __path__, "PROVIDER", Provider))
#: Webhook route name (`/hooks/<name>`) -> the provider serving it.
PROVIDERS: Mapping[str, Provider] = _by_route(_PROVIDERS)
#: Every `kind` a `[hosts.*]` table may name -> what the core knows of it.
HOST_KINDS: Mapping[str, HostKind] = _by_kind(_PROVIDERS)


def host_kind(name: str) -> HostKind:
    """The registered kind `name`; KeyError names the known ones."""
    try:
        return HOST_KINDS[name]
    except KeyError:
        raise KeyError(f"unknown host kind {name!r} (known: {', '.join(sorted(HOST_KINDS))})") from None


__all__ = [
    "HOST_KINDS", "PROVIDERS", "ZERO_SHA", "HostKind", "PreviewAction", "Provider", "PullRequestEvent", "PushEvent",
    "RefChange", "WebhookDelivery", "WebhookRequest", "host_kind",
]

"""Git host providers: one module per host, each a `Provider` (see `base`), and the route registry."""

from __future__ import annotations

from hooksvc.providers import git, gitea, github, gitlab
from hooksvc.providers.base import ZERO_SHA, Provider, PushEvent, WebhookDelivery, WebhookRequest

#: Webhook route name (`/hooks/<name>`) -> the provider serving it.
PROVIDERS: dict[str, Provider] = {p.PROVIDER: p for p in (github, gitea, gitlab, git)}

__all__ = ["PROVIDERS", "ZERO_SHA", "Provider", "PushEvent", "WebhookDelivery", "WebhookRequest"]

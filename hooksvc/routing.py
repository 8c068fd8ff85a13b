"""Which apps deploy which commit for a parsed delivery (pure: no Flask, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hooksvc.config import AppConfig
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.providers import ZERO_SHA, WebhookDelivery


@dataclass(frozen=True)
class RoutingDecision:
    """The deployments a delivery asks for, or why it asks for none."""

    deployments: tuple[NewDeployment, ...] = ()
    #: A reason for the sender when nothing deploys, e.g. "ref refs/heads/dev matches no app's branch".
    ignored: str | None = None


def select_apps(delivery: WebhookDelivery, verified: Sequence[AppConfig]) -> list[AppConfig]:
    """The apps configured for the delivery's repository; hosts differ in case, so case is ignored."""
    repo = delivery.repo.casefold()
    if not repo:
        return []
    return [app for app in verified if app.repo.casefold() == repo]


def plan_deployments(delivery: WebhookDelivery, apps: Sequence[AppConfig]) -> RoutingDecision:
    """One deployment per app whose branch or tag pattern matches the pushed ref.

    `apps` are the apps the request verified against; any of another repository is left out here
    as well, so a slip in the caller cannot deploy an unrelated app.
    """
    push = delivery.push
    if delivery.event != "push" or push is None:
        return RoutingDecision(ignored=f"event {delivery.event!r} is not a push")
    if push.deleted:
        return RoutingDecision(ignored=f"ref {push.ref} was deleted")
    candidates = select_apps(delivery, apps)
    if not candidates:
        return RoutingDecision(ignored=f"no app is configured for repository {delivery.repo!r}")
    matching = [app for app in candidates if app.matches_ref(push.ref)]
    if not matching:
        return RoutingDecision(ignored=f"ref {push.ref} matches no app's {_pattern_kind(push.ref)}")
    # A new ref has no previous commit; "" tells the worker there is nothing to compare against.
    before = "" if push.before == ZERO_SHA else push.before
    return RoutingDecision(
        deployments=tuple(
            NewDeployment(
                app=app.name,
                sha=push.after,
                ref=push.ref,
                trigger=Trigger.PUSH,
                delivery_id=delivery.delivery_id,
                forced=push.forced,
                before=before,
            )
            for app in matching
        )
    )


def _pattern_kind(ref: str) -> str:
    if ref.startswith("refs/heads/"):
        return "branch"
    if ref.startswith("refs/tags/"):
        return "tag pattern"
    return "branch or tag pattern"

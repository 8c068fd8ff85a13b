"""Which apps deploy which commit for a parsed delivery (pure: no Flask, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hooksvc.config import AppConfig
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.providers import ZERO_SHA, RefChange, WebhookDelivery


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
    """One deployment per app and pushed ref change that matches the app's branch or tag pattern.

    `apps` are the apps the request verified against; any of another repository is left out here
    as well, so a slip in the caller cannot deploy an unrelated app. Deleted refs deploy nothing.
    When one push (Bitbucket sends several ref changes in one) matches an app more than once, each
    match is a deployment, in the payload's order: intake's coalescing then keeps the last one
    queued and marks the others superseded, so every pushed commit that matched gets an answer.
    """
    push = delivery.push
    if delivery.event != "push" or push is None:
        return RoutingDecision(ignored=f"event {delivery.event!r} is not a push")
    live = [change for change in push.changes if not change.deleted]
    if not live:
        return RoutingDecision(ignored=_deleted(push.changes))
    candidates = select_apps(delivery, apps)
    if not candidates:
        return RoutingDecision(ignored=f"no app is configured for repository {delivery.repo!r}")
    deployments = tuple(
        _deployment(delivery, app, change) for change in live for app in candidates if app.matches_ref(change.ref)
    )
    if not deployments:
        return RoutingDecision(ignored=_unmatched(live))
    return RoutingDecision(deployments=deployments)


def _deployment(delivery: WebhookDelivery, app: AppConfig, change: RefChange) -> NewDeployment:
    return NewDeployment(
        app=app.name,
        sha=change.after,
        ref=change.ref,
        trigger=Trigger.PUSH,
        delivery_id=delivery.delivery_id,
        forced=change.forced,
        # A new ref has no previous commit; "" tells the worker there is nothing to compare against.
        before="" if change.before == ZERO_SHA else change.before,
        required_checks=required_checks(app),
    )


def required_checks(app: AppConfig) -> str:
    """What a push of `app` waits for before it deploys (`require_checks`); "" for none."""
    return app.require_checks.label if app.require_checks is not None else ""


def _deleted(changes: Sequence[RefChange]) -> str:
    if not changes:
        return "the push changes no ref"
    if len(changes) == 1:
        return f"ref {changes[0].ref} was deleted"
    return f"refs {', '.join(c.ref for c in changes)} were deleted"


def _unmatched(changes: Sequence[RefChange]) -> str:
    if len(changes) == 1:
        return f"ref {changes[0].ref} matches no app's {_pattern_kind(changes[0].ref)}"
    return f"refs {', '.join(c.ref for c in changes)} match no app's branch or tag pattern"


def _pattern_kind(ref: str) -> str:
    if ref.startswith("refs/heads/"):
        return "branch"
    if ref.startswith("refs/tags/"):
        return "tag pattern"
    return "branch or tag pattern"

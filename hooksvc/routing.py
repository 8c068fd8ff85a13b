"""Which apps deploy which commit for a parsed delivery (pure: no Flask, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hooksvc.config import AppConfig
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.providers import HOST_KINDS, ZERO_SHA, PreviewAction, PullRequestEvent, RefChange, WebhookDelivery

#: The commit status and record of a fork's pull request when its app does not allow forks.
FORK_REFUSED = ("previews are not built for pull requests from forks: their code would run on this server "
                "(the app's previews set allow_forks = false)")


@dataclass(frozen=True)
class RoutingDecision:
    """The deployments a delivery asks for, or why it asks for none."""

    deployments: tuple[NewDeployment, ...] = ()
    #: A reason for the sender when nothing deploys, e.g. "ref refs/heads/dev matches no app's branch".
    ignored: str | None = None
    #: Deployments recorded only to end `failed` at once, with the reason: a fork's pull request
    #: (its commit status says why no preview was built).
    refused: tuple[tuple[NewDeployment, str], ...] = ()


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


def plan_previews(delivery: WebhookDelivery, apps: Sequence[AppConfig]) -> RoutingDecision:
    """What a pull-request event asks of the previews of the apps of its repository (SPEC §13).

    Opened, reopened or pushed: a deployment of its head into the PR's preview (a fork's is refused
    unless the app allows forks); closed or merged: a teardown. Apps without enabled previews, and
    events that change no code, are ignored.
    """
    pull = delivery.pull_request
    if pull is None:
        return RoutingDecision(ignored=f"event {delivery.event!r} is not a pull request")
    candidates = [a for a in select_apps(delivery, apps) if a.previews is not None and a.previews.enabled]
    if not candidates:
        return RoutingDecision(ignored=f"no app of repository {delivery.repo!r} has previews enabled")
    if pull.action is PreviewAction.NONE:
        return RoutingDecision(ignored=f"pull request #{pull.number} {pull.host_action}: its preview stays as it is")
    deployments: list[NewDeployment] = []
    refused: list[tuple[NewDeployment, str]] = []
    for app in candidates:
        new = preview_deployment(delivery, app, pull)
        assert app.previews is not None  # noqa: S101 - candidates have previews
        if pull.action is PreviewAction.DEPLOY and pull.fork and not app.previews.allow_forks:
            refused.append((new, FORK_REFUSED))
        else:
            deployments.append(new)
    if not deployments and refused:
        return RoutingDecision(ignored=f"pull request #{pull.number} comes from a fork: {FORK_REFUSED}",
                               refused=tuple(refused))
    return RoutingDecision(deployments=tuple(deployments), refused=tuple(refused))


def preview_deployment(delivery: WebhookDelivery, app: AppConfig, pull: PullRequestEvent) -> NewDeployment:
    """The deployment (or teardown) of pull request `pull`'s preview of `app`: its head, fetched from
    the host's ref for it."""
    return NewDeployment(
        app=app.name,
        sha=pull.head_sha,
        ref=HOST_KINDS[app.host_kind].pull_ref(pull.number),
        trigger=Trigger.TEARDOWN if pull.action is PreviewAction.CLOSE else Trigger.PUSH,
        delivery_id=delivery.delivery_id,
        preview=pull.number,
        fork=pull.fork,
    )

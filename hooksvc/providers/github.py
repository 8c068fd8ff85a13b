"""GitHub and GitHub Enterprise webhooks: `X-Hub-Signature-256` over the raw request body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hooksvc.ci_checks import CheckEvent, CheckState
from hooksvc.errors import BadRequest
from hooksvc.providers.base import HostKind, PreviewAction, Provider, WebhookDelivery, WebhookRequest
from hooksvc.providers.payload import (
    BodySignature,
    check_report,
    commit_status_event,
    delivery_id,
    github_shaped_delivery,
    github_shaped_pull_request,
    json_object,
    normalised_event,
    posted_payload,
    read_sha,
    repository_name,
    show,
)

ROUTE = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"


#: GitHub signs the request body exactly as sent, also when it is form-encoded.
SIGNATURE = BodySignature(SIGNATURE_HEADER, SIGNATURE_PREFIX)
signed_bytes = SIGNATURE.signed_bytes
verify = SIGNATURE.verify


def parse(req: WebhookRequest, signed: bytes | None = None) -> WebhookDelivery:
    """The delivery's event, id, repository and (for a push) the ref update. Raises BadRequest.

    `signed` is the raw body, which `req` holds anyway: the payload is the body itself or, when
    form-encoded, its `payload` field.
    """
    event = normalised_event(EVENT_HEADER, req.header(EVENT_HEADER))
    data = json_object(posted_payload(req))
    delivery = delivery_id(DELIVERY_HEADER, req.header(DELIVERY_HEADER))
    parsed = github_shaped_delivery(ROUTE, event, delivery, data, flags=True)
    if event in CHECK_EVENTS:
        return replace(parsed, repo=repository_name(data, required=True), checks=CHECK_EVENTS[event](data))
    if event == PULL_REQUEST_EVENT:
        return replace(parsed, repo=repository_name(data, required=True),
                       pull_request=github_shaped_pull_request(data, PULL_REQUEST_ACTIONS))
    return parsed


PULL_REQUEST_EVENT = "pull_request"
#: The `pull_request` actions a preview follows; the others (labeled, edited, review_requested, ...)
#: leave it as it is. A merge is `closed` with `merged: true`.
PULL_REQUEST_ACTIONS = {"opened": PreviewAction.DEPLOY, "reopened": PreviewAction.DEPLOY,
                        "synchronize": PreviewAction.DEPLOY, "closed": PreviewAction.CLOSE}


#: A completed check run's conclusions that let a deploy through, as branch protection counts them.
PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})


def check_run_state(status: object, conclusion: object) -> CheckState | None:
    """A check run's state: waiting until `completed`, then passed or failed by its conclusion
    (cancelled, timed_out, action_required, stale, startup_failure and failure all fail)."""
    if status != "completed":
        return CheckState.PENDING if isinstance(status, str) else None
    if not isinstance(conclusion, str):
        return None
    return CheckState.SUCCESS if conclusion in PASSING_CONCLUSIONS else CheckState.FAILURE


def check_run_event(data: dict[str, Any]) -> CheckEvent:
    """A `check_run` webhook: one check run on `check_run.head_sha`, linked to its page on GitHub."""
    run = data.get("check_run")
    if not isinstance(run, dict):
        raise BadRequest(f"check_run payload: 'check_run' must be an object, got {show(run)}")
    where = "check_run payload"
    sha = read_sha(run, "head_sha", where=where)
    state = check_run_state(run.get("status"), run.get("conclusion"))
    return CheckEvent(sha=sha, reports=(check_report(run.get("name"), state, run.get("html_url"), where),))


def check_suite_event(data: dict[str, Any]) -> CheckEvent:
    """A `check_suite` webhook: something changed on `check_suite.head_sha`, but a suite is not a
    check a requirement names, and a suite with no check runs (an app with no workflow for that
    branch) neither passes nor waits. The worker reads the commit's check runs from the API instead."""
    suite = data.get("check_suite")
    if not isinstance(suite, dict):
        raise BadRequest(f"check_suite payload: 'check_suite' must be an object, got {show(suite)}")
    return CheckEvent(sha=read_sha(suite, "head_sha", where="check_suite payload"), refresh=True)


def status_event(data: dict[str, Any]) -> CheckEvent:
    """A `status` webhook: one commit status (a context, as CI systems outside Actions report)."""
    return commit_status_event(data, "status payload")


#: The CI events GitHub delivers on this route, each read into a `CheckEvent`.
CHECK_EVENTS: dict[str, Callable[[dict[str, Any]], CheckEvent]] = {
    "check_run": check_run_event,
    "check_suite": check_suite_event,
    "status": status_event,
}


PROVIDER = Provider(
    route=ROUTE,
    # GitHub wants `x-access-token` as the user name of an app installation token (and ignores the
    # name for personal tokens).
    kinds=(HostKind("github", clone_user="x-access-token", checks=True, pull_head_ref="refs/pull/{number}/head"),),
    signed_bytes=signed_bytes,
    verify=verify,
    parse=parse,
)

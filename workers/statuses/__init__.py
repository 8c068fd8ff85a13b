"""Commit-status requests, one module per git host; this package holds what they share, and the
registry of reporters.

Every builder is pure: a `HostConfig` and a `StatusUpdate` in, an `HttpRequest` out. Sending it
(and retrying) is `workers.outbox_sender`'s job. A module here that sets `REPORTER` reports for the
host kinds it names; the kinds are those of `hooksvc.providers.HOST_KINDS`, and every kind that
declares a status API must have a reporter (checked when this package is imported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from hooksvc import defaults
from hooksvc.config import HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.discovery import by_kind, declared
from hooksvc.providers import HOST_KINDS
from workers.http import HttpRequest

#: Cut descriptions end with this one character, so a cut text still fits the host's limit.
ELLIPSIS = "…"
#: Sent with every request: GitHub rejects API calls without a User-Agent.
USER_AGENT = "hooksvc"


@dataclass(frozen=True)
class StatusUpdate:
    """One commit status to report: which commit, what state, and the words and link shown with it."""

    #: The repository as the app's `repo` names it (`owner/name`, GitLab's `group/sub/project`).
    repo: str
    sha: str
    state: DeploymentState
    #: The status's name on the host (`status_context`): a host keeps one status per commit and name.
    context: str
    description: str
    #: The deployment's page; "" when `[server] public_url` is not set.
    target_url: str
    #: The pushed ref (`refs/heads/main`), "" when the deployment names none (a rollback).
    ref: str = ""
    #: A gated push its checks kept from deploying (failed or timed out): shown as a failure.
    checks_failed: bool = False


class BuildStatusRequest(Protocol):
    def __call__(self, host: HostConfig, update: StatusUpdate, /) -> HttpRequest:
        """The request that sets `update` on the host (ValueError when the host cannot take it)."""


@dataclass(frozen=True)
class StatusReporter:
    """What one module of `workers.statuses` declares as its `REPORTER`."""

    #: The host kinds (`[hosts.*] kind`) it reports to.
    kinds: frozenset[str]
    build: BuildStatusRequest


def truncate(text: str, limit: int) -> str:
    """`text` when it fits in `limit` characters, else its start plus an ellipsis, `limit` long."""
    if limit < 1:
        raise ValueError(f"a description limit must be at least 1, got {limit!r}")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def one_line(text: str) -> str:
    """The first non-blank line of `text`, whitespace collapsed: a status description is one line."""
    for line in text.splitlines():
        if line.strip():
            return re.sub(r"\s+", " ", line).strip()
    return ""


def describe_state(deployment_id: str, state: DeploymentState, error: str = "", checks_failed: bool = False) -> str:
    """The human sentence shown next to a commit status, before any host limit is applied."""
    reason = one_line(error)
    if checks_failed:
        return reason  # "not deployed: ci/test failed (link)", as the gate wrote it
    match state:
        case DeploymentState.QUEUED:
            return f"Deployment {deployment_id} queued"
        case DeploymentState.HELD:  # the reason is the whole sentence: "deploys to shop are locked by …"
            return reason or f"Deployment {deployment_id} held"
        case DeploymentState.RUNNING:
            return f"Deployment {deployment_id} running"
        case DeploymentState.SUCCEEDED:
            return f"Deployment {deployment_id} succeeded"
        case DeploymentState.FAILED:
            return f"Deployment {deployment_id} failed: {reason}" if reason else f"Deployment {deployment_id} failed"
        case DeploymentState.ERROR:
            return f"Deployment {deployment_id} error: {reason}" if reason else f"Deployment {deployment_id} error"
        case DeploymentState.SKIPPED:
            return f"Skipped: {reason}" if reason else "Skipped: nothing to deploy"
        case DeploymentState.SUPERSEDED:
            return f"Not deployed: {reason}" if reason else "Not deployed: superseded by a newer push"
        case DeploymentState.CANCELLED:
            # A running deployment's job says who cancelled it, while doing what, and what still serves.
            return f"Not deployed: {reason}" if reason.startswith("cancelled by ") else \
                "Not deployed: cancelled by an operator"
        case DeploymentState.WAITING_FOR_CHECKS:
            return reason or "waiting for checks"


def describe_preview_state(number: int, state: DeploymentState, error: str = "",
                           checks_failed: bool = False, refused: bool = False) -> str:
    """The sentence shown next to the commit status of pull request `number`'s preview: the pull
    request comes first, so a reviewer never takes it for a production deployment. A preview refused
    before it ran (a fork's) is its reason alone: "failed" would blame the pull request's code."""
    reason = one_line(error)
    what = f"Preview of PR #{number}"
    if refused and reason:
        return f"PR #{number}: {reason}"
    if checks_failed:
        return f"{what} not deployed: {reason}" if reason else f"{what} not deployed: its checks failed"
    match state:
        case DeploymentState.QUEUED:
            return f"{what} queued"
        case DeploymentState.HELD | DeploymentState.WAITING_FOR_CHECKS:
            return f"{what} waiting: {reason}" if reason else f"{what} waiting"
        case DeploymentState.RUNNING:
            return f"{what} deploying"
        case DeploymentState.SUCCEEDED:
            return f"{what} is live"
        case DeploymentState.FAILED | DeploymentState.ERROR:
            return f"{what} failed: {reason}" if reason else f"{what} failed"
        case DeploymentState.SKIPPED:
            return f"{what} not built: {reason}" if reason else f"{what} not built"
        case DeploymentState.SUPERSEDED:
            return f"{what} not deployed: {reason}" if reason else f"{what} not deployed: superseded by a newer push"
        case DeploymentState.CANCELLED:
            return f"{what} not deployed: cancelled by an operator"


#: Why a preview was torn down (`hooksvc.outbox.removal_reason`), in words; another reason is
#: shown as it is.
REMOVAL_REASONS: Mapping[str, str] = {
    "closed": "the pull request was closed or merged",
    "removed": "an operator removed it",
    "limits": "no push came within its time to live, or a newer preview needed its place (the app's max)",
}


def describe_removal(why: str) -> str:
    """Why a preview was torn down, as a clause (`closed` -> "the pull request was closed")."""
    return REMOVAL_REASONS.get(why, one_line(why))


def status_context(context: str, preview: int | None) -> str:
    """The status context of a deployment: the app's, or, for a preview, the app's plus `/preview`,
    so a preview's status never overwrites production's on the same commit."""
    return context if preview is None else f"{context}{defaults.PREVIEW_STATUS_CONTEXT_SUFFIX}"


def mark_skipped(description: str) -> str:
    """Hosts without a `skipped` state show `success`; the description must then say it was skipped."""
    return description if description.lower().startswith("skipped") else f"Skipped: {description}"


def api_base(api_url: str, suffix: str) -> str:
    """`api_url` with the host's API path (`/api/v1`, `/api/v4`) appended unless it already ends with it."""
    base = api_url.rstrip("/")
    return base if base.endswith(suffix) else base + suffix


#: GitHub, Gitea and Forgejo share these four states. Neither has `skipped` nor `canceled` (Gitea's
#: newer `skipped` is not sent): a skip is a `success` that says so, and a deployment that never ran
#: is an `error` so nobody mistakes that commit for a live one.
FOUR_STATE_MAP = {
    DeploymentState.QUEUED: "pending",
    DeploymentState.WAITING_FOR_CHECKS: "pending",
    DeploymentState.HELD: "pending",
    DeploymentState.RUNNING: "pending",
    DeploymentState.SUCCEEDED: "success",
    DeploymentState.FAILED: "failure",
    DeploymentState.ERROR: "error",
    DeploymentState.SKIPPED: "success",
    DeploymentState.SUPERSEDED: "error",
    DeploymentState.CANCELLED: "error",
}


def four_state_body(update: StatusUpdate, limit: int) -> dict[str, object]:
    """The JSON body GitHub and Gitea/Forgejo both take: state, context, description and target_url."""
    description = update.description
    if update.state is DeploymentState.SKIPPED and not update.checks_failed:
        description = mark_skipped(description)
    body: dict[str, object] = {
        # A push its checks kept from deploying is a failure, never a green skip.
        "state": "failure" if update.checks_failed else FOUR_STATE_MAP[update.state],
        "context": update.context,
        "description": truncate(description, limit),
    }
    if update.target_url:
        body["target_url"] = update.target_url
    return body


def repo_statuses_url(base: str, repo: str, sha: str) -> str:
    """`{base}/repos/{owner}/{name}/statuses/{sha}`: where GitHub and Gitea/Forgejo both take a status."""
    owner, name = repo.split("/", 1)
    return f"{base}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"


def json_headers(credential: tuple[str, str], accept: str = "application/json") -> dict[str, str]:
    """Headers of every status request: the host's credential header plus JSON content negotiation."""
    name, value = credential
    return {name: value, "Accept": accept, "Content-Type": "application/json", "User-Agent": USER_AGENT}


def unmatched_kinds(reporters: Mapping[str, StatusReporter]) -> list[str]:
    """Why `reporters` and the host registry disagree: one sentence per kind, none when they agree."""
    problems = [f"host kind {name!r} declares a status API but has no reporter in workers/statuses/"
                for name, kind in HOST_KINDS.items() if kind.statuses and name not in reporters]
    problems += [f"workers/statuses/ reports to {name!r}, which is no host kind with a status API"
                 for name in reporters if name not in HOST_KINDS or not HOST_KINDS[name].statuses]
    return problems


#: Host kind -> the reporter that builds its commit-status requests.
REPORTERS: Mapping[str, StatusReporter] = by_kind(declared(__name__, __path__, "REPORTER", StatusReporter),
                                                   "status reporters")
if _problems := unmatched_kinds(REPORTERS):
    raise ImportError("; ".join(_problems))

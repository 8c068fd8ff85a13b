"""The outbox writer: commit statuses and notifications, written atomically with each state change.

`write_events` is a `DeploymentStore` listener: it runs inside the store's MULTI/EXEC, so an
event is recorded if and only if the state change is. `workers.outbox_sender` delivers them.

Layout in Redis (key names in `hooksvc.keys`):

- lane      a LIST of JSON events, oldest first. One lane per commit and app for statuses
            (`status:<app>:<sha>`: every status of that commit, in the order they happened,
            across redeploys), one per app for deployments recorded on the git host
            (`host_deployment:<app>`), one per preview for its environment and one for its pull
            request comment (`host_deployment:<app>:pr-<n>`, `preview_comment:<app>:<n>`; a
            preview's statuses have lanes of their own too, `status:<app>:<sha>:pr-<n>`, so they
            never wait behind production's), one per deployment for its GitHub check run
            (`check_run:<id>`: created by its first event, updated by the next), one per deployment
            and target for notifications
            (`notify:<id>:webhook`, `notify:<id>:slack`), so a slow Slack never holds a status back.
- due       a ZSET lane → when its head may next be tried (epoch seconds; 0 = now).
- lock      a short lease per lane (SET NX PX with a random token): one sender per lane at a time.
- retry     a HASH per lane describing the failing head: event id, first failure time, attempts.

An event leaves its list only after it was delivered or given up, so a sender that dies
mid-delivery loses nothing: its lease runs out and another sender sends the head again.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass

from redis.client import Pipeline

from hooksvc import keys
from hooksvc.deployments import Deployment, DeploymentState, Trigger

#: Event kinds: a commit status, or one of the two notification targets.
STATUS = "status"
WEBHOOK = "webhook"
SLACK = "slack"
NOTIFY_KINDS = (WEBHOOK, SLACK)
#: A deployment recorded on the git host (GitHub Deployments, GitLab deployments).
HOST_DEPLOYMENT = "host_deployment"
#: A deployment reported as a GitHub check run (hosts with GitHub App credentials only; the sender
#: drops the others, since this listener has no config to tell them apart).
CHECK_RUN = "check_run"
#: The pull request comment that shows a preview (its URL, commit and state), edited in place.
PREVIEW_COMMENT = "preview_comment"

#: A commit status needs the full object id; a manual deployment's sha stays empty (or is what the
#: operator typed) until the worker resolves it, so its early statuses are not sent.
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class OutboxEvent:
    """One thing to deliver: a snapshot of the deployment at the moment its state changed.

    It holds no secret and no host detail: the sender builds the request from the config it has
    when it delivers, so a token is never written to Redis.
    """

    id: str
    kind: str
    deployment_id: str
    app: str
    sha: str
    ref: str
    state: DeploymentState
    error: str
    at: float
    #: A gated push its checks kept from deploying: its status is a failure, never a green skip.
    checks_failed: bool = False
    #: The pull request whose preview the deployment is (None: the app itself).
    preview: int | None = None
    #: Set for a preview's teardown, saying why (`removal_reason`); the event then reports the
    #: removal (its state: whether it is done), not a deployment of the preview.
    removed: str = ""
    #: A preview of a fork's pull request (refused unless its app's previews allow forks).
    fork: bool = False

    @classmethod
    def from_deployment(cls, kind: str, deployment: Deployment, now: float | None = None) -> OutboxEvent:
        return cls(
            id=uuid.uuid4().hex,
            kind=kind,
            deployment_id=deployment.id,
            app=deployment.app,
            sha=deployment.sha,
            ref=deployment.ref,
            state=deployment.state,
            error=deployment.error,
            at=time.time() if now is None else now,
            checks_failed=deployment.checks_failed,
            preview=deployment.preview,
            removed=removal_reason(deployment),
            fork=deployment.fork,
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "state": str(self.state)}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> OutboxEvent:
        """Decode an event; ValueError (or KeyError/TypeError) when it is not one."""
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            deployment_id=str(data["deployment_id"]),
            app=str(data["app"]),
            sha=str(data["sha"]),
            ref=str(data.get("ref", "")),
            state=DeploymentState(data["state"]),
            error=str(data.get("error", "")),
            at=float(data["at"]),
            checks_failed=bool(data.get("checks_failed", False)),
            preview=int(data["preview"]) if data.get("preview") is not None else None,
            removed=str(data.get("removed", "")),
            fork=bool(data.get("fork", False)),
        )


def removal_reason(deployment: Deployment) -> str:
    """Why a teardown removes its preview, read from who asked: an operator (`removed`), the pull
    request's webhook (`closed`: a merged pull request is closed too), else hooksvc itself (`limits`:
    the ttl sweep, or an eviction at the app's `max`; the record does not say which, the teardown's
    log does); "" for a deployment that is no teardown."""
    if deployment.trigger is not Trigger.TEARDOWN:
        return ""
    if deployment.operator:
        return "removed"
    return "closed" if deployment.delivery_id else "limits"


def status_lane(app: str, sha: str, preview: int | None = None) -> str:
    """One lane per app and commit; a preview's statuses (a context of their own) have their own lane."""
    return f"status:{app}:{sha}" + (f":pr-{preview}" if preview is not None else "")


def host_deployment_lane(app: str, preview: int | None = None) -> str:
    """One lane per app: a host deployment's statuses need its create delivered first, and the
    `inactive` of the release a success replaced must follow that release's own statuses. Each
    preview's environment has a lane of its own, so a preview never holds production's back."""
    return f"host_deployment:{app}" + (f":pr-{preview}" if preview is not None else "")


def preview_comment_lane(app: str, number: int) -> str:
    """One lane per preview: its pull request comment is found or created once, then edited."""
    return f"preview_comment:{app}:{number}"


def check_run_lane(deployment_id: str) -> str:
    """One lane per deployment: its check run is created by the first event and updated by the next."""
    return f"check_run:{deployment_id}"


def notify_lane(deployment_id: str, kind: str) -> str:
    return f"notify:{deployment_id}:{kind}"


def is_full_sha(sha: str) -> bool:
    return bool(_FULL_SHA.fullmatch(sha))


def append(pipe: Pipeline, lane: str, event: OutboxEvent) -> None:
    """Queue `event` at the end of `lane`; a new lane is due at once, a lane in backoff keeps its time."""
    pipe.rpush(keys.outbox_lane(lane), event.to_json())
    pipe.zadd(keys.OUTBOX_DUE, {lane: 0}, nx=True)


def waits_for_ci(deployment: Deployment) -> bool:
    """A push still waiting for its CI checks, or one they kept back: not (yet) an attempt to deploy,
    so the git host's environment does not list it (its commit status says what happened)."""
    return deployment.state is DeploymentState.WAITING_FOR_CHECKS or deployment.checks_failed


def write_events(pipe: Pipeline, deployment: Deployment) -> None:
    """DeploymentStore listener: queue the commit status for this state change, and on a final
    state the notifications, in the same transaction as the change itself.

    Notifications are queued for every final state; the sender drops those the app has no target
    for (this listener has no config, so that choice is made where the config is).
    """
    # A preview's teardown says nothing about its commit: no status, no check run. Its preview's
    # environment and pull request comment hear of it once it has ended (removed, or not).
    teardown = deployment.trigger is Trigger.TEARDOWN
    news = not teardown or deployment.state.is_final
    if is_full_sha(deployment.sha):
        if not teardown:
            append(pipe, status_lane(deployment.app, deployment.sha, deployment.preview),
                   OutboxEvent.from_deployment(STATUS, deployment))
        if news and not waits_for_ci(deployment):
            append(pipe, host_deployment_lane(deployment.app, deployment.preview),
                   OutboxEvent.from_deployment(HOST_DEPLOYMENT, deployment))
        if not teardown:
            append(pipe, check_run_lane(deployment.id), OutboxEvent.from_deployment(CHECK_RUN, deployment))
    if news and deployment.preview is not None:
        append(pipe, preview_comment_lane(deployment.app, deployment.preview),
               OutboxEvent.from_deployment(PREVIEW_COMMENT, deployment))
    if deployment.state.is_final:
        for kind in NOTIFY_KINDS:
            append(pipe, notify_lane(deployment.id, kind), OutboxEvent.from_deployment(kind, deployment))


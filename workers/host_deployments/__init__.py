"""Deployments recorded on the git host: GitHub Deployments and GitLab deployments.

Besides commit statuses, each deployment of an app whose host has a deployments API (GitHub,
GitLab) and whose `environment` is not "" is recorded there. The events come through the outbox
(`hooksvc.outbox`, kind `host_deployment`, one lane per app, so everything an app's environment
hears arrives in the order it happened); `workers.outbox_sender` delivers them with the same
retries as commit statuses, asking this module for the next request of the lane's head.

One outbox event may take several requests, one after the other, each delivered before the next
is built: GitHub needs the deployment created (its answer holds the id every status is posted to),
then the status, then, after a `success`, `inactive` for the release it replaced. What the host
has is remembered in a small Redis record per deployment (`keys.host_deployment`): the host's id,
the last event delivered, the replaced release still to mark inactive. A sender that dies between
two requests leaves the record as it was, and the next one carries on from there.

Which release the host shows active is remembered per app (`keys.host_deployment_active`) rather
than read from the deployment records: hooksvc's live release changes when a deployment succeeds,
but the host learns of it only once that success is delivered, and the lane delivers in order.

A pull request's preview (SPEC §13) is recorded in an environment of its own (`Target`: GitHub's
`pr-<n>`, transient and not production; GitLab's `review/mr-<n>`, a review app), in a lane of its
own, with the preview's address as the environment's URL. Its environment record (the same key with
the pull request number) also remembers the host's last deployment there and GitLab's environment
id. When the preview is torn down, an event with `removed` set marks its deployments `inactive`
(GitHub) or stops its environment (GitLab).

A module here that declares `DEPLOYMENTS` (a `DeploymentsApi`: its host kinds, its planner, the hint
for a refused create) speaks one host's deployments API; `DEPLOYMENT_APIS` is found from them, keyed
by the kind names of `hooksvc.providers.HOST_KINDS`. A host without one gets commit statuses only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import redis

from hooksvc import keys
from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.discovery import declared
from hooksvc.outbox import OutboxEvent
from hooksvc.providers import HOST_KINDS
from workers.http import HttpRequest, HttpResponse, PlannedRequest, id_in_answer

#: A record outlives every retry of its events; delivered ones are deleted at once.
RECORD_TTL_SECONDS = 30 * 24 * 3600


class Action(StrEnum):
    CREATE = "create"
    STATUS = "status"
    INACTIVATE = "inactivate"
    #: A preview's environment: found, created, or (torn down) stopped or marked inactive.
    ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Target:
    """Where a deployment is recorded on the host: the app's environment, or a preview's."""

    environment: str
    #: The environment's address (GitHub's `environment_url`, GitLab's `external_url`), if any.
    url: str | None = None
    #: The pull request of a preview; None for the app's own environment.
    preview: int | None = None
    #: A preview's environment record (`keys.host_deployment_active(app, preview)`), as strings.
    record: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What the host has of one deployment."""

    host_id: str = ""
    #: The outbox event whose state the host got last.
    sent: str = ""
    #: GitHub: the host id (and our id) of the release this deployment's success replaced, until
    #: it is marked `inactive`.
    replaces: str = ""
    replaces_deployment: str = ""
    #: The host refused to create it: its later events are not sent.
    given_up: bool = False

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> Record:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            host_id=fields.get("host_id", ""),
            sent=fields.get("sent", ""),
            replaces=fields.get("replaces", ""),
            replaces_deployment=fields.get("replaces_deployment", ""),
            given_up=fields.get("given_up") == "1",
        )


@dataclass(frozen=True)
class Step:
    """The next request of an event, and what it is called in the log."""

    action: Action
    request: HttpRequest
    what: str
    #: True when a create also sets the deployment's status (GitLab): the event is then delivered.
    carries_state: bool = False
    #: True for GitHub's `success`: the host shows this deployment active from now on.
    activates: bool = False
    #: Fields of the target's environment record to set once delivered, from the answer
    #: (ValueError: the answer is unusable), and fields to delete then.
    remember: Callable[[HttpResponse], Mapping[str, str]] | None = None
    forget: tuple[str, ...] = ()


class PlanDeployment(Protocol):
    def __call__(
        self, host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, target: Target,
        description: str, page_url: Callable[[str], str], where: str, /,
    ) -> Step | None:
        """The next request `event` needs on this host, given what the host already has; None when none."""


@dataclass(frozen=True)
class DeploymentsApi:
    """What one module of `workers.host_deployments` declares as its `DEPLOYMENTS`."""

    #: The host kinds (`[hosts.*] kind`) whose deployments API it speaks.
    kinds: frozenset[str]
    plan: PlanDeployment
    #: Said with a rejected create: the usual cause is a token allowed commit statuses only.
    permission_hint: str
    #: The environment of pull request N's preview.
    preview_environment: Callable[[int], str]


def target_of(host: HostConfig, app: AppConfig, event: OutboxEvent, preview_url: str | None = None,
              record: Mapping[str, str] | None = None) -> Target:
    """Where `event` is recorded: the app's environment, or its preview's (at `preview_url`)."""
    if event.preview is None:
        return Target(app.environment, app.environment_url)
    return Target(DEPLOYMENT_APIS[host.kind].preview_environment(event.preview), preview_url, event.preview,
                  dict(record or {}))


def plan(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, description: str,
    page_url: Callable[[str], str], target: Target | None = None,
) -> Step | None:
    """The next request `event` needs, given what the host already has; None when it needs none."""
    if record.given_up and not event.removed:
        return None
    target = target or target_of(host, app, event)
    where = f"in environment {target.environment!r} ({app.repo}@{event.sha[:12]})"
    return DEPLOYMENT_APIS[host.kind].plan(host, app, event, record, target, description, page_url, where)


def host_id_of(answer: HttpResponse) -> str:
    """The deployment id in a create's answer; ValueError when there is none."""
    return id_in_answer(answer, "deployment")


class HostDeployments:
    """The Redis side: reads and writes the records the plan works from."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def record(self, deployment_id: str) -> Record:
        return Record.from_hash(self.redis.hgetall(keys.host_deployment(deployment_id)))

    def prepare(
        self, event: OutboxEvent, app: AppConfig, host: HostConfig, description: str,
        page_url: Callable[[str], str], preview_url: str | None = None,
    ) -> PlannedRequest | None:
        """The next request of `event`; None when there is none (the event is then done, and a final
        event's record is deleted; so is a torn-down preview's environment record)."""
        api = DEPLOYMENT_APIS.get(host.kind)
        if api is None or not host.has_credentials or not app.environment:
            return None
        active_key = keys.host_deployment_active(app.name, event.preview)
        environment = {k.decode(): v.decode() for k, v in self.redis.hgetall(active_key).items()}
        target = target_of(host, app, event, preview_url, environment)
        step = plan(host, app, event, self.record(event.deployment_id), description, page_url, target)
        if step is None:
            if event.removed and event.state is DeploymentState.SUCCEEDED:
                self.redis.delete(active_key)
            elif event.state.is_final:
                self.redis.delete(keys.host_deployment(event.deployment_id))
            return None
        return PlannedRequest(
            request=step.request,
            what=step.what,
            hint=api.permission_hint if step.action in (Action.CREATE, Action.ENVIRONMENT) else "",
            delivered=lambda answer: self._delivered(step, event, answer),
            dropped=lambda rejected: self._dropped(step, event, rejected),
        )

    def _update(self, deployment_id: str, mapping: Mapping[str, str]) -> None:
        key = keys.host_deployment(deployment_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=dict(mapping))
            pipe.expire(key, RECORD_TTL_SECONDS)
            pipe.execute()

    def _delivered(self, step: Step, event: OutboxEvent, answer: HttpResponse) -> None:
        key = keys.host_deployment(event.deployment_id)
        active_key = keys.host_deployment_active(event.app, event.preview)
        remembered = dict(step.remember(answer)) if step.remember is not None else {}
        if remembered or step.forget:
            with self.redis.pipeline(transaction=True) as pipe:
                if step.forget:
                    pipe.hdel(active_key, *step.forget)
                if remembered:
                    pipe.hset(active_key, mapping=remembered)
                pipe.expire(active_key, RECORD_TTL_SECONDS)
                pipe.execute()
        if step.action is Action.ENVIRONMENT:
            return
        if step.action is Action.CREATE:
            fields = {"host_id": host_id_of(answer)}
            if step.carries_state:
                fields["sent"] = event.id
            self._update(event.deployment_id, fields)
        elif step.action is Action.STATUS:
            if step.activates:
                self._replace_active(event)
            else:
                self._update(event.deployment_id, {"sent": event.id})
        else:
            self.redis.hdel(key, "replaces", "replaces_deployment")

    def _replace_active(self, event: OutboxEvent) -> None:
        """GitHub shows this deployment active now: remember the one it replaced, to mark it inactive."""
        active_key = keys.host_deployment_active(event.app, event.preview)
        record = self.record(event.deployment_id)
        active = {k.decode(): v.decode() for k, v in self.redis.hgetall(active_key).items()}
        fields = {"sent": event.id}
        if active.get("host_id") and active.get("deployment_id") != event.deployment_id:
            fields |= {"replaces": active["host_id"], "replaces_deployment": active.get("deployment_id", "")}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.host_deployment(event.deployment_id), mapping=fields)
            pipe.expire(keys.host_deployment(event.deployment_id), RECORD_TTL_SECONDS)
            pipe.hset(active_key, mapping={"deployment_id": event.deployment_id, "host_id": record.host_id})
            if event.preview is not None:
                pipe.expire(active_key, RECORD_TTL_SECONDS)
            pipe.execute()

    def _dropped(self, step: Step, event: OutboxEvent, rejected: bool) -> None:
        key = keys.host_deployment(event.deployment_id)
        if event.removed and event.state is DeploymentState.SUCCEEDED:
            # Nothing more will be said of this environment: forget it (a reopened pull request
            # finds GitLab's environment again by its name).
            self.redis.delete(keys.host_deployment_active(event.app, event.preview))
        elif event.state.is_final:
            self.redis.delete(key)
        elif step.action is Action.CREATE and rejected:
            self._update(event.deployment_id, {"given_up": "1"})


def _by_kind(apis: list[DeploymentsApi]) -> dict[str, DeploymentsApi]:
    """kind -> its deployments API; ValueError when two claim a kind or a kind has no status API."""
    by_kind: dict[str, DeploymentsApi] = {}
    for api in apis:
        for kind in api.kinds:
            if kind in by_kind:
                raise ValueError(f"host kind {kind!r} has two deployments APIs")
            if kind not in HOST_KINDS or not HOST_KINDS[kind].statuses:
                raise ValueError(f"workers/host_deployments/ speaks to {kind!r}, which is no host kind with an API")
            by_kind[kind] = api
    return by_kind


#: Host kinds with a deployments API (GitHub, GitLab) -> it; the others get commit statuses only.
DEPLOYMENT_APIS: Mapping[str, DeploymentsApi] = _by_kind(declared(__name__, __path__, "DEPLOYMENTS", DeploymentsApi))

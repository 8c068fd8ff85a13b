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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import redis

from hooksvc import keys
from hooksvc.config import AppConfig, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent
from hooksvc.presentation import short_ref
from workers.host_deployments import github, gitlab
from workers.http import HttpRequest, HttpResponse

#: Host kinds with a deployments API; Gitea and Forgejo get commit statuses only.
KINDS = frozenset({"github", "gitlab"})
#: A record outlives every retry of its events; delivered ones are deleted at once.
RECORD_TTL_SECONDS = 30 * 24 * 3600
#: Said with a rejected request: the usual cause is a token allowed commit statuses only.
PERMISSION_HINT = {
    "github": "if the token may not write deployments, give it the repo_deployment scope (fine-grained: "
              "Deployments read and write), or set the app's environment = \"\" to record none",
    "gitlab": "if the token may not create deployments, give it the api scope and at least the Developer "
              "role, or set the app's environment = \"\" to record none",
}


class Action(StrEnum):
    CREATE = "create"
    STATUS = "status"
    INACTIVATE = "inactivate"


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


def gitlab_ref(app: AppConfig, event: OutboxEvent) -> tuple[str, bool]:
    """GitLab's `ref` and `tag` for a deployment: its branch or tag, else (a rollback names none)
    the app's branch, else the sha itself, which GitLab resolves too."""
    if event.ref:
        return short_ref(event.ref), event.ref.startswith("refs/tags/")
    if app.single_branch and app.branch:
        return app.branch, False
    return event.sha, False


def plan(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, description: str,
    page_url: Callable[[str], str],
) -> Step | None:
    """The next request `event` needs, given what the host already has; None when it needs none."""
    if record.given_up:
        return None
    where = f"in environment {app.environment!r} ({app.repo}@{event.sha[:12]})"
    if host.kind == "github":
        return _plan_github(host, app, event, record, description, page_url, where)
    return _plan_gitlab(host, app, event, record, where)


def _plan_github(
    host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, description: str,
    page_url: Callable[[str], str], where: str,
) -> Step | None:
    """Create, then this event's status, then (after a success) `inactive` on the replaced release."""
    if not record.host_id:
        about = {"app": app.name, "deployment_id": event.deployment_id}
        if page_url(event.deployment_id):
            about["url"] = page_url(event.deployment_id)
        payload = {"hooksvc": about}
        request = github.build_create_request(host, app.repo, event.sha, app.environment, payload,
                                              f"hooksvc deployment {event.deployment_id}")
        return Step(Action.CREATE, request, f"GitHub deployment {where}: create")
    if record.sent != event.id:
        state = github.STATE_MAP[event.state]
        request = github.build_status_request(host, app.repo, record.host_id, state, description,
                                              page_url(event.deployment_id), app.environment_url)
        return Step(Action.STATUS, request, f"GitHub deployment {record.host_id} {where}: {state} ({event.state})",
                    activates=event.state is DeploymentState.SUCCEEDED)
    if record.replaces:
        request = github.build_status_request(
            host, app.repo, record.replaces, github.INACTIVE,
            f"Replaced by deployment {event.deployment_id} ({event.sha[:12]})",
            page_url(record.replaces_deployment) if record.replaces_deployment else "", None,
        )
        return Step(Action.INACTIVATE, request,
                    f"GitHub deployment {record.replaces} in environment {app.environment!r}: inactive "
                    f"(replaced by deployment {event.deployment_id})")
    return None


def _plan_gitlab(host: HostConfig, app: AppConfig, event: OutboxEvent, record: Record, where: str) -> Step | None:
    """Create with this event's status once there is one GitLab can take; later, update the status."""
    status = gitlab.STATE_MAP[event.state]
    if status is None:
        return None
    if not record.host_id:
        ref, tag = gitlab_ref(app, event)
        request = gitlab.build_create_request(host, app.repo, event.sha, ref, tag, app.environment, status)
        return Step(Action.CREATE, request, f"GitLab deployment {where}: create {status} ({event.state})",
                    carries_state=True)
    if record.sent != event.id:
        request = gitlab.build_update_request(host, app.repo, record.host_id, status)
        return Step(Action.STATUS, request, f"GitLab deployment {record.host_id} {where}: {status} ({event.state})")
    return None


def host_id_of(answer: HttpResponse) -> str:
    """The deployment id in a create's answer; ValueError when there is none."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        raise ValueError("the answer is not JSON, so it holds no deployment id") from None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"the answer holds no deployment id (id: {value!r})")
    return str(value)


@dataclass(frozen=True)
class PlannedRequest:
    """A step made ready for the outbox sender, with what to record once it is delivered or given up."""

    request: HttpRequest
    what: str
    hint: str
    delivered: Callable[[HttpResponse], None]
    dropped: Callable[[bool], None]


class HostDeployments:
    """The Redis side: reads and writes the records the plan works from."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def record(self, deployment_id: str) -> Record:
        return Record.from_hash(self.redis.hgetall(keys.host_deployment(deployment_id)))

    def prepare(
        self, event: OutboxEvent, app: AppConfig, host: HostConfig, description: str,
        page_url: Callable[[str], str],
    ) -> PlannedRequest | None:
        """The next request of `event`; None when there is none (the event is then done, and a final
        event's record is deleted)."""
        if host.kind not in KINDS or host.token is None or not app.environment:
            return None
        step = plan(host, app, event, self.record(event.deployment_id), description, page_url)
        if step is None:
            if event.state.is_final:
                self.redis.delete(keys.host_deployment(event.deployment_id))
            return None
        return PlannedRequest(
            request=step.request,
            what=step.what,
            hint=PERMISSION_HINT[host.kind] if step.action is Action.CREATE else "",
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
        active_key = keys.host_deployment_active(event.app)
        record = self.record(event.deployment_id)
        active = {k.decode(): v.decode() for k, v in self.redis.hgetall(active_key).items()}
        fields = {"sent": event.id}
        if active.get("host_id") and active.get("deployment_id") != event.deployment_id:
            fields |= {"replaces": active["host_id"], "replaces_deployment": active.get("deployment_id", "")}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.host_deployment(event.deployment_id), mapping=fields)
            pipe.expire(keys.host_deployment(event.deployment_id), RECORD_TTL_SECONDS)
            pipe.hset(active_key, mapping={"deployment_id": event.deployment_id, "host_id": record.host_id})
            pipe.execute()

    def _dropped(self, step: Step, event: OutboxEvent, rejected: bool) -> None:
        key = keys.host_deployment(event.deployment_id)
        if event.state.is_final:
            self.redis.delete(key)
        elif step.action is Action.CREATE and rejected:
            self._update(event.deployment_id, {"given_up": "1"})

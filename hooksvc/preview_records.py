"""The live previews of each app (SPEC §13), in Redis, and the teardowns operators and the ttl ask for.

A preview's record (`keys.app_previews`: PR number -> JSON) is written by the worker that deploys it
and removed by the one that tears it down; the host port it publishes on is claimed across apps in
`keys.PREVIEW_PORTS`. A teardown is a deployment of trigger `teardown` in the PR's own queued slot,
so it supersedes a queued deploy of the same PR and runs under the PR's own lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import redis

from hooksvc import keys
from hooksvc.config import AppConfig, Config
from hooksvc.connection import call
from hooksvc.deployments import Deployment, NewDeployment, Trigger, iso_time
from hooksvc.errors import BadRequest, NotFound
from hooksvc.providers import HOST_KINDS

if TYPE_CHECKING:
    from hooksvc.store import DeploymentStore

log = logging.getLogger("hooksvc.previews")

#: A preview's states: its first deployment is running, it serves, or its last deployment failed.
DEPLOYING = "deploying"
LIVE = "live"
FAILED = "failed"


@dataclass(frozen=True)
class PreviewRecord:
    """One preview of an app: what runs, where it is reached, and when its PR was last pushed to."""

    app: str
    number: int
    sha: str
    url: str
    state: str
    #: When the PR was last pushed to (epoch seconds): `ttl` counts from here, eviction picks the oldest.
    updated_at: float
    deployment_id: str = ""
    #: The host port its service publishes on (`ports` mode), else None.
    port: int | None = None
    fork: bool = False

    def to_json(self) -> dict[str, Any]:
        """The public shape (`GET /api/apps/<app>/previews`)."""
        return {"number": self.number, "url": self.url, "sha": self.sha, "state": self.state,
                "updated_at": iso_time(self.updated_at), "deployment_id": self.deployment_id or None}

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, raw: bytes | str) -> PreviewRecord:
        data = json.loads(raw)
        return cls(app=str(data["app"]), number=int(data["number"]), sha=str(data["sha"]), url=str(data["url"]),
                   state=str(data["state"]), updated_at=float(data["updated_at"]),
                   deployment_id=str(data.get("deployment_id", "")),
                   port=int(data["port"]) if data.get("port") is not None else None, fork=bool(data.get("fork")))


class PreviewRecords:
    """The previews of every app, and the ports they hold. Pass a Redis client in."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def of_app(self, app: str) -> list[PreviewRecord]:
        """The app's previews, by PR number."""
        raw = call(self.redis.hgetall, keys.app_previews(app))
        return sorted((PreviewRecord.loads(v) for v in raw.values()), key=lambda p: p.number)

    def get(self, app: str, number: int) -> PreviewRecord | None:
        raw = call(self.redis.hget, keys.app_previews(app), str(number))
        return PreviewRecord.loads(raw) if raw else None

    def put(self, record: PreviewRecord) -> None:
        call(self.redis.hset, keys.app_previews(record.app), str(record.number), record.dumps())

    def remove(self, app: str, number: int) -> PreviewRecord | None:
        """Forget the preview and free its port; the record it had, if any."""
        record = self.get(app, number)
        call(self.redis.hdel, keys.app_previews(app), str(number))
        if record is not None and record.port is not None:
            self.release_port(record.port, app, number)
        return record

    def claim_port(self, app: str, number: int, first: int, last: int, usable: Callable[[int], bool]) -> int | None:
        """A port of `first..last` no other preview holds and `usable(port)` accepts (nothing else
        listens on it), now held by this one; the one it holds already; None when all are taken."""
        holder = _port_holder(app, number)
        for port in range(first, last + 1):
            if call(self.redis.hsetnx, keys.PREVIEW_PORTS, str(port), holder):
                if usable(port):
                    return port
                call(self.redis.hdel, keys.PREVIEW_PORTS, str(port))
            elif (call(self.redis.hget, keys.PREVIEW_PORTS, str(port)) or b"").decode() == holder:
                return port
        return None

    def release_port(self, port: int, app: str, number: int) -> None:
        """Free `port` if this preview holds it."""
        if (call(self.redis.hget, keys.PREVIEW_PORTS, str(port)) or b"").decode() == _port_holder(app, number):
            call(self.redis.hdel, keys.PREVIEW_PORTS, str(port))


def _port_holder(app: str, number: int) -> str:
    return f"{app} pr-{number}"


def request_teardown(store: DeploymentStore, app: AppConfig, number: int, *, operator: str = "",
                     sha: str = "") -> Deployment:
    """Queue the teardown of pull request `number`'s preview of `app`; NotFound when it has none (and no
    sha is given: a closed PR's webhook names its head even when no preview was recorded)."""
    if number < 1:
        raise BadRequest(f"a pull request number is a positive integer, got {number!r}")
    record = PreviewRecords(store.redis).get(app.name, number)
    if record is None and not sha:
        raise NotFound(f"app {app.name!r} has no preview of pull request #{number}")
    new = NewDeployment(app=app.name, sha=sha or (record.sha if record else ""), ref=preview_ref(app, number),
                        trigger=Trigger.TEARDOWN, operator=operator, preview=number)
    result = store.intake.submit([new])
    return result.deployments[0]


def preview_ref(app: AppConfig, number: int) -> str:
    """Where the app's host keeps pull request `number`'s head."""
    return HOST_KINDS[app.host_kind].pull_ref(number)


def expired(records: list[PreviewRecord], ttl: float, now: float) -> list[PreviewRecord]:
    """The previews not pushed to for longer than `ttl` seconds."""
    return [r for r in records if now - r.updated_at > ttl]


def sweep_expired(store: DeploymentStore, config: Config, now: float | None = None) -> list[Deployment]:
    """Queue the teardown of every preview whose PR was not pushed to for its app's `ttl`; the
    teardowns queued. A preview whose teardown is queued already is left to it."""
    now = time.time() if now is None else now
    records = PreviewRecords(store.redis)
    queued: list[Deployment] = []
    for app in config.apps.values():
        if app.previews is None:
            continue
        for record in expired(records.of_app(app.name), app.previews.ttl, now):
            waiting = store.queued_id(app.name, record.number)
            current = store.find(waiting) if waiting else None
            if current is not None and current.trigger is Trigger.TEARDOWN and current.state.is_waiting:
                continue
            dep = request_teardown(store, app, record.number, operator="", sha=record.sha)
            log.info("preview #%s of %s: no push for %.0fs (ttl %.0fs): teardown queued as deployment %s",
                     record.number, app.name, now - record.updated_at, app.previews.ttl, dep.id)
            queued.append(dep)
    return queued

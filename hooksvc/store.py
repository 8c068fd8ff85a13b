"""The deployment state machine and its queries, in Redis.

Every state change is a MULTI/EXEC transaction guarded by WATCH, retried when another writer got
there first; the store's listeners (the outbox writer and the counters) add their writes to the
same transaction, so an event or a count exists if and only if the change does. The webhook path
(`hooksvc.intake`) and the log streams (`hooksvc.logs`) hang off the store as `store.intake` and
`store.logs`. `open_store` is the one way production code builds a store: with every listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import redis
from redis.client import Pipeline

from hooksvc import counters, defaults, keys, outbox
from hooksvc.check_records import CheckRecords
from hooksvc.config import Config
from hooksvc.connection import call, connect, decode_hash, redis_url
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import Conflict, NotFound
from hooksvc.freeze import describe as describe_freeze
from hooksvc.intake import Intake
from hooksvc.jobqueue import deploy_queue, drop_job, enqueue_deployment
from hooksvc.logs import DeploymentLogs

#: Called inside a transaction when a deployment changes state (the outbox writer, the counters).
StateListener = Callable[[Pipeline, Deployment], None]
#: What every production store notifies: commit statuses and notifications, and /metrics counters.
LISTENERS: tuple[StateListener, ...] = (outbox.write_events, counters.count_final_state)


def open_store(
    config: Config, connection: redis.Redis | None = None, *, dispatch_inline: bool = True
) -> DeploymentStore:
    """The store of `config`'s Redis (or of `connection`) with every listener, so none is forgotten."""
    return DeploymentStore(
        connection if connection is not None else connect(redis_url(config)),
        job_timeout=config.worker.job_timeout,
        listeners=LISTENERS,
        dispatch_inline=dispatch_inline,
        frozen=freeze_reasons(config),
    )


#: Why an app is frozen at a time (epoch seconds), "" when it is not: what holds its new deployments.
FreezeReason = Callable[[str, float], str]


def freeze_reasons(config: Config) -> FreezeReason:
    """The `FreezeReason` of `config`'s apps' freeze windows."""

    def frozen(app: str, now: float) -> str:
        found = config.app(app)
        window = found.frozen_at(datetime.fromtimestamp(now, UTC)) if found is not None else None
        return describe_freeze(app, window) if window is not None else ""

    return frozen


@dataclass(frozen=True)
class LiveRelease:
    app: str
    sha: str
    deployment_id: str
    since: float


class DeploymentStore:
    """All of hooksvc's deployment state. Pass a Redis client in; nothing here is global."""

    def __init__(
        self,
        connection: redis.Redis,
        job_timeout: float = defaults.JOB_TIMEOUT_SECONDS,
        listeners: Sequence[StateListener] = (),
        dispatch_inline: bool = True,
        clock: Callable[[], float] = time.time,
        frozen: FreezeReason = lambda app, now: "",
    ) -> None:
        self.redis = connection
        #: Why an app's new deployments are held for a freeze window ("" when they are not).
        self.frozen = frozen
        #: Time of a submit (created_at, dedupe periods); tests move it forward.
        self.clock = clock
        self.queue = deploy_queue(connection)
        self.job_timeout = job_timeout
        self.listeners = list(listeners)
        self.logs = DeploymentLogs(connection)
        self.checks = CheckRecords(connection)
        #: Dispatch the intake right after each submit (`dispatch_inline`) except in the web app:
        #: its answer must not wait for RQ and the listeners, which the workers' dispatchers write.
        self.intake = Intake(self, dispatch_inline=dispatch_inline)

    # -- transactions ----------------------------------------------------------------------------

    def transaction(self, watch: Sequence[str], body: Callable[[Pipeline], Any]) -> Any:
        """Run `body` under WATCH, retrying on a concurrent write; Redis errors become 503s."""

        def attempt() -> Any:
            with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        if watch:
                            pipe.watch(*watch)
                        result = body(pipe)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue

        return call(attempt)

    def notify(self, pipe: Pipeline, deployment: Deployment) -> None:
        for listener in self.listeners:
            listener(pipe, deployment)

    def enqueue_job(self, pipe: Pipeline, deployment: Deployment) -> None:
        enqueue_deployment(self.queue, pipe, deployment, self.job_timeout)

    def _transition(
        self,
        deployment_id: str,
        change: Callable[[Deployment | None], Deployment | None],
        writes: Callable[[Pipeline, Deployment], None],
    ) -> Deployment | None:
        """Load the deployment, `change` it (None: nothing to do), and in one transaction write the
        new record, free the app's queued pointer when it names this deployment and it no longer
        waits, add `writes`, and tell the listeners."""
        dkey = keys.deployment(deployment_id)

        def body(pipe: Pipeline) -> Deployment | None:
            new = change(self.load(pipe, deployment_id))
            if new is None:
                pipe.unwatch()
                return None
            qkey = keys.app_queued(new.app, new.preview)
            pipe.watch(qkey)
            pointer = pipe.get(qkey)
            pipe.multi()
            pipe.hset(dkey, mapping=new.to_fields())
            if pointer is not None and pointer.decode() == deployment_id and not new.state.is_waiting:
                pipe.delete(qkey)
            writes(pipe, new)
            self.notify(pipe, new)
            return new

        return self.transaction([dkey], body)  # type: ignore[no-any-return]

    # -- state changes -----------------------------------------------------------------------------

    def cancel(self, deployment_id: str) -> Deployment:
        """Cancel a deployment that has not started (queued, held or waiting for its checks); Conflict when it
        started or ended."""
        if not (deployment_id.isascii() and deployment_id.isdigit()):  # not an id: see find()
            raise NotFound(f"no deployment {deployment_id!r}")

        def change(dep: Deployment | None) -> Deployment:
            if dep is None:
                raise NotFound(f"no deployment {deployment_id!r}")
            if not dep.state.is_waiting:
                raise Conflict(f"deployment {deployment_id} is {dep.state}, only a queued or waiting one can be "
                               "cancelled")
            return replace(dep, state=DeploymentState.CANCELLED, finished_at=time.time(), error="cancelled")

        def writes(pipe: Pipeline, dep: Deployment) -> None:
            drop_job(self.queue, pipe, deployment_id)
            self.logs.append_in(pipe, deployment_id, "cancelled by an operator")

        done = self._transition(deployment_id, change, writes)
        assert done is not None  # noqa: S101 - change() raises rather than answer None
        return done

    def release(self, deployment_id: str, from_state: DeploymentState, reason: str) -> Deployment | None:
        """A waiting deployment (`from_state`) → queued, with its RQ job; None when it no longer waits
        there (superseded, cancelled, already released). It keeps the app's queued slot."""

        def change(dep: Deployment | None) -> Deployment | None:
            if dep is None or dep.state is not from_state:
                return None
            return replace(dep, state=DeploymentState.QUEUED, error="")

        def writes(pipe: Pipeline, dep: Deployment) -> None:
            self.logs.append_in(pipe, deployment_id, reason)
            self.enqueue_job(pipe, dep)

        return self._transition(deployment_id, change, writes)

    def update_waiting(self, deployment_id: str, state: DeploymentState, reason: str) -> Deployment | None:
        """Say what a deployment still waiting in `state` waits for (its `error`, its commit status's
        text); None when it no longer waits there."""

        def change(dep: Deployment | None) -> Deployment | None:
            if dep is None or dep.state is not state or dep.error == reason:
                return None
            return replace(dep, error=reason)

        return self._transition(deployment_id, change, lambda pipe, dep: None)

    def start(self, deployment_id: str, previous_sha: str) -> Deployment | None:
        """queued → running; None when the deployment is no longer queued (superseded, cancelled)."""

        def change(dep: Deployment | None) -> Deployment | None:
            if dep is None or dep.state is not DeploymentState.QUEUED:
                return None
            return replace(dep, state=DeploymentState.RUNNING, started_at=time.time(), previous_sha=previous_sha)

        def writes(pipe: Pipeline, dep: Deployment) -> None:
            pipe.sadd(keys.RUNNING, deployment_id)

        return self._transition(deployment_id, change, writes)

    def finish(
        self,
        deployment_id: str,
        state: DeploymentState,
        error: str = "",
        live_sha: str | None = None,
        checks_failed: bool = False,
    ) -> Deployment | None:
        """running or waiting → a final state; records the live release on success. None if already final."""
        if not state.is_final:
            raise ValueError(f"finish() needs a final state, got {state}")

        def change(dep: Deployment | None) -> Deployment | None:
            if dep is None or dep.state.is_final:
                return None
            return replace(dep, state=state, finished_at=time.time(), error=error,
                           checks_failed=checks_failed or dep.checks_failed)

        def writes(pipe: Pipeline, dep: Deployment) -> None:
            pipe.srem(keys.RUNNING, deployment_id)
            if live_sha is not None:
                pipe.hset(keys.app_live(dep.app), mapping={
                    "sha": live_sha, "deployment_id": deployment_id, "since": str(dep.finished_at),
                })
            self.logs.append_in(pipe, deployment_id, f"finished: {state}" + (f": {error}" if error else ""))

        return self._transition(deployment_id, change, writes)

    def set_commit(self, deployment_id: str, message: str, author: str) -> None:
        """Record the subject line and author of the commit a deployment runs (the rollback list shows them)."""
        dkey = keys.deployment(deployment_id)

        def body(pipe: Pipeline) -> None:
            if not pipe.exists(dkey):
                pipe.unwatch()
                return
            pipe.multi()
            pipe.hset(dkey, mapping={"commit_message": message, "commit_author": author})

        self.transaction([dkey], body)

    def set_sha(self, deployment_id: str, sha: str) -> None:
        """Record the sha a manual deployment resolved to; listeners hear of it (its commit gets `pending`)."""
        dkey = keys.deployment(deployment_id)

        def body(pipe: Pipeline) -> None:
            dep = self.load(pipe, deployment_id)
            if dep is None:
                pipe.unwatch()
                return
            pipe.multi()
            pipe.hset(dkey, "sha", sha)
            self.notify(pipe, replace(dep, sha=sha))

        self.transaction([dkey], body)

    def reap_abandoned(self) -> list[Deployment]:
        """End `error` every running deployment whose worker no longer holds its app's lock.

        The holder renews the lock every few seconds; a lock that expired (or that another
        deployment now holds) means the worker died mid-deployment.
        """
        reaped: list[Deployment] = []
        for deployment_id in self.running_ids():
            dep = self.find(deployment_id)
            if dep is None:
                call(self.redis.srem, keys.RUNNING, deployment_id)
                continue
            holder = call(self.redis.get, keys.app_lock(dep.app, dep.preview))
            if holder is not None and holder.decode() == deployment_id:
                continue
            done = self.finish(deployment_id, DeploymentState.ERROR, "the worker running this deployment died")
            if done is not None:
                reaped.append(done)
        return reaped

    # -- queries -------------------------------------------------------------------------------------

    @staticmethod
    def load(conn: redis.Redis | Pipeline, deployment_id: str) -> Deployment | None:
        raw = conn.hgetall(keys.deployment(deployment_id))
        return Deployment.from_fields(decode_hash(raw)) if raw else None

    def find(self, deployment_id: str) -> Deployment | None:
        """The deployment, None when there is none (and for anything that is not an id)."""
        # Ids are the digits of the counter `keys.NEXT_ID`; other names under the deployment prefix
        # (that counter, the log streams) are other kinds of keys, which a lookup must never read.
        if not (deployment_id.isascii() and deployment_id.isdigit()):
            return None
        return call(self.load, self.redis, deployment_id)  # type: ignore[no-any-return]

    def get(self, deployment_id: str) -> Deployment:
        """The deployment, or NotFound (also for anything that is not an id)."""
        dep = self.find(deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {deployment_id!r}")
        return dep

    def recent(self, app: str | None = None, state: str | None = None, limit: int = 50) -> list[Deployment]:
        """Newest first, optionally filtered by app and state."""
        out: list[Deployment] = []
        start, page = 0, max(limit, 50)
        newest = int(call(self.redis.get, keys.NEXT_ID) or 0)
        while len(out) < limit:
            if app:
                ids = [i.decode() for i in call(self.redis.lrange, keys.app_index(app), start, start + page - 1)]
            else:
                ids = [str(i) for i in range(newest - start, max(0, newest - start - page), -1)]
            if not ids:
                break
            with self.redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(keys.deployment(i))
                raws = call(pipe.execute)
            for raw in raws:
                if not raw:
                    continue
                dep = Deployment.from_fields(decode_hash(raw))
                if state is None or dep.state == state:
                    out.append(dep)
            start += page
        return out[:limit]

    def queued_id(self, app: str, preview: int | None = None) -> str | None:
        raw = call(self.redis.get, keys.app_queued(app, preview))
        return raw.decode() if raw else None

    def queued_ids(self, app: str) -> list[str]:
        """The ids in every queued slot of the app: its own, then its previews' (SPEC §13)."""
        own = self.queued_id(app)
        slots = sorted(call(lambda: list(self.redis.scan_iter(match=keys.preview_queued_pattern(app), count=1000))))
        found = [raw.decode() for raw in call(self.redis.mget, slots)] if slots else []
        return [i for i in [own, *found] if i]

    def running_ids(self) -> list[str]:
        return sorted((i.decode() for i in call(self.redis.smembers, keys.RUNNING)), key=int)

    def live(self, app: str) -> LiveRelease | None:
        raw = decode_hash(call(self.redis.hgetall, keys.app_live(app)))
        if not raw:
            return None
        return LiveRelease(app=app, sha=raw["sha"], deployment_id=raw["deployment_id"], since=float(raw["since"]))

    def previous_success(self, app: str, before_sha: str | None) -> Deployment | None:
        """The newest succeeded deployment of `app` (not of a preview) whose sha differs from `before_sha`."""
        for dep in self.recent(app=app, state=DeploymentState.SUCCEEDED, limit=defaults.KEEP_DEPLOYMENTS):
            if dep.sha != before_sha and dep.preview is None:
                return dep
        return None

    def follow_log(self, deployment_id: str, poll_ms: int = 1000, max_seconds: float | None = None,
                   abandoned: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """The deployment's log, line by line as it is written, until the deployment is final (or for at
        most `max_seconds`, or until `abandoned()`: see `DeploymentLogs.follow`)."""
        return self.logs.follow(deployment_id, lambda: self.get(deployment_id).state.is_final, poll_ms, max_seconds,
                                abandoned)

    def ping(self) -> None:
        call(self.redis.ping)

"""Operators' locks on apps, and the held deployments that locks and freeze windows keep waiting.

A lock is a HASH in Redis (`keys.app_locked`: by, reason, at). The intake script reads it: while it
exists (or while the app's freeze window is in force) a new deployment starts `held`, in the app's
queued slot, with the reason as its `error`. `settle_held` moves the held one on when nothing holds
it any more (unlock calls it at once, a worker's duty every `HOLD_CHECK_SECONDS` for windows that
end): `held → queued` with its RQ job (a gated push: `held → waiting-for-checks`), in one
transaction that also tells the listeners, so its commit status follows. A gated push whose checks
pass while a lock or window holds the app is held then (`hold_passed`). Not to be confused with
`workers.locks`, the deploy lease one worker holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis
from redis.client import Pipeline

from hooksvc import defaults, keys
from hooksvc.ci_checks import waiting_text
from hooksvc.config import AppConfig
from hooksvc.connection import call, decode_hash
from hooksvc.deployments import Deployment, DeploymentState, iso_time
from hooksvc.errors import BadRequest

if TYPE_CHECKING:
    from hooksvc.store import DeploymentStore


@dataclass(frozen=True)
class AppLockState:
    """Who locked an app, why and when (epoch seconds)."""

    app: str
    by: str
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "at": iso_time(self.at)}

    def describe(self) -> str:
        """The sentence a held deployment's status shows."""
        return f"deploys to {self.app} are locked by {self.by}: {self.reason}"


def read_lock(conn: redis.Redis | Pipeline, app: str) -> AppLockState | None:
    """The app's lock, None when it is not locked (`conn`: a client or a pipeline in WATCH)."""
    raw = decode_hash(conn.hgetall(keys.app_locked(app)))
    if not raw:
        return None
    return AppLockState(app, raw.get("by", ""), raw.get("reason", ""), float(raw.get("at") or 0))


def lock(store: DeploymentStore, app: AppConfig, by: str, reason: str) -> AppLockState:
    """Lock `app`: its new deployments are held until `unlock`. Locking a locked app replaces the
    reason (and who holds it). A deployment already queued or running is not stopped."""
    reason = " ".join(reason.split())
    if not reason:
        raise BadRequest("a lock needs a 'reason' (what the others should know, e.g. 'database migration')")
    if len(reason) > defaults.LOCK_REASON_MAX_CHARS:
        raise BadRequest(f"'reason' is {len(reason)} characters, at most {defaults.LOCK_REASON_MAX_CHARS} are kept")
    state = AppLockState(app.name, by, reason, time.time())
    call(store.redis.hset, keys.app_locked(app.name), mapping={"by": by, "reason": reason, "at": repr(state.at)})
    settle_held(store, app)  # a held one now names the lock (a window may have held it so far)
    return state


def unlock(store: DeploymentStore, app: AppConfig) -> Deployment | None:
    """Unlock `app` and release its held deployment unless a freeze window still holds it (then the
    held one names the window). Returns the deployment it released or updated, if any."""
    call(store.redis.delete, keys.app_locked(app.name))
    return settle_held(store, app)


def hold_reason(pipe: redis.Redis | Pipeline, store: DeploymentStore, app: AppConfig, now: float) -> str:
    """What holds `app`'s deployments now: its lock, else its freeze window, else nothing ("")."""
    held_by = read_lock(pipe, app.name)
    if held_by is not None:
        return held_by.describe()
    return store.frozen(app.name, now)


def settle_held(store: DeploymentStore, app: AppConfig, now: float | None = None) -> Deployment | None:
    """Queue the app's held deployment when nothing holds it any more, or update the reason it
    shows when that changed; None when there was nothing to do. One transaction, watching the
    queued slot, the lock and the deployment: a push or a lock in between makes it start again."""
    qkey, lkey = keys.app_queued(app.name), keys.app_locked(app.name)

    def body(pipe: Pipeline) -> Deployment | None:
        pointer = pipe.get(qkey)
        dep = store.load(pipe, pointer.decode()) if pointer else None
        if dep is None or dep.state is not DeploymentState.HELD:
            pipe.unwatch()
            return None
        pipe.watch(keys.deployment(dep.id))
        dep = store.load(pipe, dep.id)
        if dep is None or dep.state is not DeploymentState.HELD:
            pipe.unwatch()
            return None
        at = time.time() if now is None else now
        why = hold_reason(pipe, store, app, at)
        if why == dep.error:
            pipe.unwatch()
            return None
        if why:
            new = replace(dep, error=why)
        elif dep.required_checks:
            # A gated push released by its lock or window waits for its checks next (the gate reads them);
            # its checks_timeout counts from now: the time a lock or window held it does not count against its CI.
            new = replace(dep, state=DeploymentState.WAITING_FOR_CHECKS, error=waiting_text((dep.required_checks,)),
                          checks_since=at)
        else:
            new = replace(dep, state=DeploymentState.QUEUED, error="")
        pipe.multi()
        pipe.hset(keys.deployment(dep.id), mapping=new.to_fields())
        if why:
            store.logs.append_in(pipe, dep.id, f"held: {why}")
        elif new.state is DeploymentState.WAITING_FOR_CHECKS:
            store.logs.append_in(pipe, dep.id, f"released: nothing holds it any more; {new.error}")
        else:
            store.logs.append_in(pipe, dep.id, "released: nothing holds it any more; queued")
            store.enqueue_job(pipe, new)
        store.notify(pipe, new)
        return new

    return store.transaction([qkey, lkey], body)  # type: ignore[no-any-return]


def hold_passed(store: DeploymentStore, app: AppConfig, deployment_id: str,
                now: float | None = None) -> Deployment | None:
    """A gated push whose checks just passed → `held` when a lock or freeze window holds the app now:
    it has not started, and a lock or window holds whatever has not (a lock set while the push waited
    for its CI, a window begun meanwhile). Released later, it waits for its checks again, which pass
    at once from what is recorded. None when nothing holds the app (the caller queues the push) or
    the push no longer waits for its checks. One transaction, watching the deployment and the lock."""
    dkey, lkey = keys.deployment(deployment_id), keys.app_locked(app.name)

    def body(pipe: Pipeline) -> Deployment | None:
        dep = store.load(pipe, deployment_id)
        why = hold_reason(pipe, store, app, time.time() if now is None else now) if dep is not None else ""
        if dep is None or dep.state is not DeploymentState.WAITING_FOR_CHECKS or not why:
            pipe.unwatch()
            return None
        new = replace(dep, state=DeploymentState.HELD, error=why)
        pipe.multi()
        pipe.hset(dkey, mapping=new.to_fields())
        store.logs.append_in(pipe, dep.id, f"its checks passed, but held: {why}")
        store.notify(pipe, new)
        return new

    return store.transaction([dkey, lkey], body)  # type: ignore[no-any-return]


def settle_all(store: DeploymentStore, apps: Mapping[str, AppConfig]) -> list[Deployment]:
    """`settle_held` for every app: what a worker's duty runs every `HOLD_CHECK_SECONDS`."""
    return [dep for app in apps.values() if (dep := settle_held(store, app)) is not None]

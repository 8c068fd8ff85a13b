"""Deployments that nothing would ever move on, found and moved on.

A queued deployment waits for its RQ job. When that job is gone (deleted, or lost with a Redis
that restarted without its data) it is queued again; when the job ended, or its worker vanished,
before the deployment started, the deployment ends `error` with the reason. Running deployments
whose worker died are the reaper's (`DeploymentStore.reap_abandoned`). Both run in every worker's
runtime, so every deployment reaches a final state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from redis.client import Pipeline

from hooksvc import defaults, keys
from hooksvc.app_locks import hold_passed
from hooksvc.config import AppConfig
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.jobqueue import JOB_DEAD, JOB_MISSING, job_fate
from hooksvc.store import DeploymentStore

log = logging.getLogger("hooksvc.recovery")


def recover_stranded(
    store: DeploymentStore, apps: Iterable[str], older_than: float = defaults.STRANDED_QUEUED_SECONDS,
) -> list[tuple[Deployment, str]]:
    """Re-queue or end each app's queued deployment (its previews' too) whose job is missing or dead; returns
    what was done.

    Only deployments queued for longer than `older_than` are looked at: a fresh one may still be
    waiting for the intake dispatcher to write its job.
    """
    done: list[tuple[Deployment, str]] = []
    now = time.time()
    for deployment_id in (i for app in apps for i in store.queued_ids(app)):
        dep = store.find(deployment_id)
        if dep is None or dep.state is not DeploymentState.QUEUED or now - dep.created_at < older_than:
            continue
        fate, why = job_fate(store.queue, dep.id)
        if fate == JOB_MISSING:
            if _requeue(store, dep.id, why):
                log.warning("deployment %s of %s re-queued: %s", dep.id, dep.app, why)
                done.append((dep, "requeued"))
        elif fate == JOB_DEAD:
            ended = store.finish(dep.id, DeploymentState.ERROR, f"never started: {why}")
            if ended is not None:
                log.warning("deployment %s of %s ended error: never started: %s", dep.id, dep.app, why)
                done.append((ended, "ended"))
    return done


def release_ungated(store: DeploymentStore, apps: Mapping[str, AppConfig]) -> list[Deployment]:
    """Queue each push still waiting for CI checks its app no longer requires (`require_checks` was
    removed from the config since it arrived): no checks gate would ever release it. While the app is
    locked or frozen the push is held instead, as any push is then."""
    released = []
    for name, app in apps.items():
        deployment_id = store.queued_id(name) if app.require_checks is None else None
        dep = store.find(deployment_id) if deployment_id else None
        if dep is None or dep.state is not DeploymentState.WAITING_FOR_CHECKS:
            continue
        if hold_passed(store, app, dep.id) is not None:
            continue  # the app is locked or frozen: held now, released by the lock's or window's end
        done = store.release(dep.id, DeploymentState.WAITING_FOR_CHECKS,
                             "the app no longer sets require_checks: queued without waiting for checks")
        if done is not None:
            log.warning("deployment %s of %s queued: the app no longer sets require_checks", dep.id, name)
            released.append(done)
    return released


def _requeue(store: DeploymentStore, deployment_id: str, why: str) -> bool:
    """Write the deployment's job again, if it is still queued (one transaction)."""

    def body(pipe: Pipeline) -> bool:
        dep = store.load(pipe, deployment_id)
        if dep is None or dep.state is not DeploymentState.QUEUED:
            pipe.unwatch()
            return False
        pipe.multi()
        store.enqueue_job(pipe, dep)
        store.logs.append_in(pipe, deployment_id, f"re-queued: {why}")
        return True

    return bool(store.transaction([keys.deployment(deployment_id)], body))

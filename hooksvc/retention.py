"""Bounded storage: each app keeps the records and logs of its newest `keep_deployments` deployments.

Older finished deployments lose their record, their log stream and their index entry; a queued or
running one is never touched, whatever its age, nor the deployment whose release is live. Dedupe
entries expire by themselves (see `hooksvc.intake`), and the outbox empties as it delivers, so
these are what would grow forever.
"""

from __future__ import annotations

from hooksvc import keys
from hooksvc.connection import call
from hooksvc.deployments import DeploymentState
from hooksvc.store import DeploymentStore

#: Ids looked at per round trip while trimming.
TRIM_BATCH = 500


def trim_app(store: DeploymentStore, app: str, keep: int) -> int:
    """Delete the finished deployments of `app` beyond its newest `keep`; returns how many went."""
    index = keys.app_index(app)
    live = store.live(app)
    removed = 0
    start = keep
    while True:
        ids = [i.decode() for i in call(store.redis.lrange, index, start, start + TRIM_BATCH - 1)]
        if not ids:
            return removed
        with store.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(keys.deployment(i), "state")
            states = call(pipe.execute)
        doomed = [i for i, state in zip(ids, states, strict=True)
                  if (state is None or DeploymentState(state.decode()).is_final)
                  and not (live is not None and live.deployment_id == i)]
        kept = len(ids) - len(doomed)
        if doomed:
            with store.redis.pipeline(transaction=True) as pipe:
                for i in doomed:
                    pipe.delete(keys.deployment(i), keys.deployment_log(i), keys.deployment_log_size(i))
                    pipe.lrem(index, 1, i)
                call(pipe.execute)
            removed += len(doomed)
        # What stays (queued or running) keeps its place; the next batch starts after it.
        start += kept
        if len(ids) < TRIM_BATCH:
            return removed


def trim(store: DeploymentStore, apps: dict[str, int]) -> int:
    """`trim_app` for each app name → how many deployments it keeps."""
    return sum(trim_app(store, app, keep) for app, keep in apps.items())


"""Retention against a real Redis: old finished deployments go with their logs and index entries; queued,
running and live ones stay."""

from __future__ import annotations

import redis as redis_lib

from hooksvc import keys
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.retention import trim_app
from hooksvc.store import DeploymentStore


def deploy(store: DeploymentStore, n: int, state: DeploymentState | None = DeploymentState.FAILED) -> str:
    """One deployment of `shop` (sha n), run to `state` (None: left running)."""
    dep = store.intake.submit([NewDeployment("shop", f"{n:040x}", "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, "")
    if state is not None:
        store.finish(dep.id, state, live_sha=dep.sha if state is DeploymentState.SUCCEEDED else None)
    return dep.id


class TestTrim:
    def test_old_finished_deployments_go_with_their_logs_and_index_entries(
        self, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """With keep=3, the fourth-newest and older finished deployments lose record, log (and its size) and
        index entry."""
        ids = [deploy(store, n) for n in range(8)]
        for i in ids:
            store.logs.append(i, "a worker's line, counted against the log's cap")
        assert trim_app(store, "shop", keep=3) == 5
        assert [d.id for d in store.recent(app="shop")] == list(reversed(ids[-3:]))
        for old in ids[:5]:
            assert not redis.exists(keys.deployment(old), keys.deployment_log(old), keys.deployment_log_size(old))
        assert redis.llen(keys.app_index("shop")) == 3
        assert trim_app(store, "shop", keep=3) == 0

    def test_running_and_live_deployments_stay_whatever_their_age(
        self, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """An old running deployment and the one whose release is live are kept past `keep`."""
        running = deploy(store, 0, state=None)
        live = deploy(store, 1, state=DeploymentState.SUCCEEDED)
        newer = [deploy(store, n) for n in range(2, 6)]
        assert trim_app(store, "shop", keep=2) == 2
        assert {d.id for d in store.recent(app="shop")} == {running, live, *newer[-2:]}
        assert store.get(running).state is DeploymentState.RUNNING
        assert store.live("shop") is not None and store.live("shop").deployment_id == live  # type: ignore[union-attr]

    def test_trimming_pages_through_long_indexes(self, store: DeploymentStore, redis: redis_lib.Redis) -> None:
        """More old deployments than one batch are all trimmed in one call."""
        for n in range(1200):
            deploy(store, n)
        assert trim_app(store, "shop", keep=10) == 1190
        assert redis.llen(keys.app_index("shop")) == 10

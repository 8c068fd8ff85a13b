"""App locks and freeze windows against a real Redis: pushes held, superseded, released, cancelled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import app_locks, keys
from hooksvc.config import AppConfig, Config
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import BadRequest
from hooksvc.jobqueue import job_id_for
from hooksvc.outbox import OutboxEvent, status_lane
from hooksvc.store import DeploymentStore, open_store
from tests.helpers.config import frozen_app, make_config

SHA_A, SHA_B = "a" * 40, "b" * 40
#: A Saturday noon in Berlin (11:00 UTC), inside "Fri 16:00 - Mon 08:00".
SATURDAY = datetime(2026, 12, 12, 11, 0, tzinfo=UTC).timestamp()
#: The Monday after, 08:00 Berlin: the window's end.
MONDAY_0800 = datetime(2026, 12, 14, 7, 0, tzinfo=UTC).timestamp()


def push(app: str, sha: str) -> NewDeployment:
    return NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH)


@pytest.fixture
def frozen_config(tmp_path: Path) -> Config:
    return make_config(tmp_path, extra=frozen_app(tmp_path, '"Fri 16:00 - Mon 08:00"'))


@pytest.fixture
def shop(config: Config) -> AppConfig:
    found = config.app("shop")
    assert found is not None
    return found


def statuses(redis: redis_lib.Redis, app: str, sha: str) -> list[OutboxEvent]:
    return [OutboxEvent.from_json(raw) for raw in redis.lrange(keys.outbox_lane(status_lane(app, sha)), 0, -1)]


class TestLock:
    def test_push_to_a_locked_app_is_held_with_who_and_why(self, config: Config, shop: AppConfig,
                                                            redis: redis_lib.Redis) -> None:
        """A push during a lock is recorded `held` (no job), and its pending status names the lock."""
        store = open_store(config, redis)
        state = app_locks.lock(store, shop, "alice", "database migration")
        assert app_locks.read_lock(redis, "shop") == state
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        assert dep.state is DeploymentState.HELD
        assert dep.error == "deploys to shop are locked by alice: database migration"
        assert store.queued_id("shop") == dep.id
        assert store.queue.job_ids == []
        events = statuses(redis, "shop", SHA_A)
        assert [(e.state, e.error) for e in events] == [(DeploymentState.HELD, dep.error)]

    def test_unlock_queues_the_newest_held_push(self, config: Config, shop: AppConfig,
                                                redis: redis_lib.Redis) -> None:
        """A newer push supersedes the held one; unlock queues the newest with its job at once."""
        store = open_store(config, redis)
        app_locks.lock(store, shop, "alice", "database migration")
        older = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        newer = store.intake.submit([push("shop", SHA_B)]).deployments[0]
        assert store.get(older.id).state is DeploymentState.SUPERSEDED
        released = app_locks.unlock(store, shop)
        assert released is not None and released.id == newer.id
        assert store.get(newer.id).state is DeploymentState.QUEUED and store.get(newer.id).error == ""
        assert store.queue.job_ids == [job_id_for(newer.id)]
        assert app_locks.read_lock(redis, "shop") is None
        assert [e.state for e in statuses(redis, "shop", SHA_B)] == [DeploymentState.HELD, DeploymentState.QUEUED]
        assert "released" in "".join(store.logs.read(newer.id)[0])

    def test_held_deployment_can_be_cancelled(self, config: Config, shop: AppConfig, redis: redis_lib.Redis) -> None:
        """A held deployment ends like a queued one: an operator may cancel it, and unlock then queues nothing."""
        store = open_store(config, redis)
        app_locks.lock(store, shop, "alice", "database migration")
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        assert store.cancel(dep.id).state is DeploymentState.CANCELLED
        assert app_locks.unlock(store, shop) is None
        assert store.queue.job_ids == []

    def test_other_apps_are_not_held(self, config: Config, shop: AppConfig, redis: redis_lib.Redis) -> None:
        """A lock holds its own app only."""
        store = open_store(config, redis)
        app_locks.lock(store, shop, "alice", "database migration")
        assert store.intake.submit([push("blog", SHA_A)]).deployments[0].state is DeploymentState.QUEUED

    @pytest.mark.parametrize(("reason", "message"), [("  ", "a lock needs a 'reason'"),
                                                     ("x" * 201, "at most 200")])
    def test_lock_needs_a_short_reason(self, store: DeploymentStore, shop: AppConfig, reason: str,
                                       message: str) -> None:
        """A lock without a reason, or with a very long one, is refused and changes nothing."""
        with pytest.raises(BadRequest, match=message):
            app_locks.lock(store, shop, "alice", reason)
        assert app_locks.read_lock(store.redis, "shop") is None


class TestFreeze:
    def test_push_in_a_window_is_held_until_it_ends(self, frozen_config: Config, redis: redis_lib.Redis) -> None:
        """A push during the weekend window is held naming the window's end; at the end it is queued."""
        cafe = frozen_config.apps["cafe"]
        store = open_store(frozen_config, redis)
        store.clock = lambda: SATURDAY
        dep = store.intake.submit([push("cafe", SHA_A)]).deployments[0]
        assert dep.state is DeploymentState.HELD
        assert "deploys to cafe are frozen until Mon 2026-12-14 08:00 CET" in dep.error
        assert app_locks.settle_held(store, cafe, now=MONDAY_0800 - 1) is None
        released = app_locks.settle_held(store, cafe, now=MONDAY_0800)
        assert released is not None and released.state is DeploymentState.QUEUED
        assert store.queue.job_ids == [job_id_for(dep.id)]

    def test_admin_override_runs_through_the_window(self, frozen_config: Config, redis: redis_lib.Redis) -> None:
        """A deployment asked for with `override_freeze` is queued although the window is in force."""
        store = open_store(frozen_config, redis)
        store.clock = lambda: SATURDAY
        new = NewDeployment("cafe", SHA_A, "", Trigger.MANUAL, forced=True, override_freeze=True)
        assert store.intake.submit([new]).deployments[0].state is DeploymentState.QUEUED

    def test_unlock_inside_a_window_keeps_it_held_for_the_window(self, frozen_config: Config,
                                                                 redis: redis_lib.Redis) -> None:
        """Unlocking during a window releases nothing: the held one now names the window instead."""
        cafe = frozen_config.apps["cafe"]
        store = open_store(frozen_config, redis)
        store.clock = lambda: SATURDAY
        store.frozen = lambda app, now: "frozen for the weekend" if app == "cafe" else ""
        app_locks.lock(store, cafe, "alice", "database migration")
        dep = store.intake.submit([push("cafe", SHA_A)]).deployments[0]
        assert "locked by alice" in dep.error
        updated = app_locks.unlock(store, cafe)
        assert updated is not None and updated.state is DeploymentState.HELD
        assert store.get(dep.id).error == "frozen for the weekend"
        assert store.queue.job_ids == []

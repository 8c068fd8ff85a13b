"""The deployment store against a real Redis: records, coalescing, dedupe, transitions, outages."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis as redis_lib
from rq import Queue

from hooksvc import defaults, keys
from hooksvc.connection import connect
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import Conflict, NotFound, RedisUnavailable
from hooksvc.intake import DEDUPE_PERIOD_SECONDS
from hooksvc.jobqueue import job_id_for
from hooksvc.store import LISTENERS, DeploymentStore
from tests.helpers.redis_server import RedisServer

SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


def push(app: str, sha: str, delivery: str = "") -> NewDeployment:
    return NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH, delivery_id=delivery)


class TestSubmit:
    def test_submit_records_the_deployment_and_enqueues_its_job(self, store: DeploymentStore) -> None:
        """A submitted deployment is queued in Redis and has an RQ job named after it."""
        dep = store.intake.submit([push("shop", SHA_A, "d1")]).deployments[0]
        assert store.get(dep.id).state is DeploymentState.QUEUED
        assert store.get(dep.id).delivery_id == "d1"
        assert store.queue.job_ids == [job_id_for(dep.id)]
        assert store.queued_id("shop") == dep.id

    def test_newer_push_supersedes_the_queued_one(self, store: DeploymentStore) -> None:
        """Per app at most one deployment is queued: a newer one replaces it, which ends superseded."""
        first = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        result = store.intake.submit([push("shop", SHA_B)])
        second = result.deployments[0]
        old = store.get(first.id)
        assert old.state is DeploymentState.SUPERSEDED
        assert SHA_B[:12] in old.error and old.finished_at is not None
        assert result.superseded == (first.id,)
        assert store.queue.job_ids == [job_id_for(second.id)]
        assert store.queued_id("shop") == second.id

    def test_other_apps_are_not_coalesced(self, store: DeploymentStore) -> None:
        """Coalescing is per app: another app's queued deployment stays."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.intake.submit([push("blog", SHA_B)])
        assert store.get(a.id).state is DeploymentState.QUEUED

    def test_running_deployment_is_not_superseded(self, store: DeploymentStore) -> None:
        """A running deployment keeps running; the new push queues behind it."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.start(a.id, previous_sha="")
        b = store.intake.submit([push("shop", SHA_B)]).deployments[0]
        assert store.get(a.id).state is DeploymentState.RUNNING
        assert store.queued_id("shop") == b.id

    def test_same_delivery_id_is_a_duplicate(self, store: DeploymentStore) -> None:
        """A redelivery with the same delivery id returns the first answer and creates nothing."""
        first = store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"])
        again = store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"])
        assert again.duplicate_of == (first.deployments[0].summary(),)
        assert again.deployments == ()
        assert len(store.recent()) == 1

    @pytest.mark.parametrize("offset", [0.0, 0.3, 0.99], ids=["period start", "early", "period end"])
    def test_dedupe_outlives_githubs_redelivery_window_then_forgets(
        self, redis: redis_lib.Redis, offset: float
    ) -> None:
        """A delivery id is a duplicate for at least DEDUPE_TTL_SECONDS (GitHub redelivers for 3 days)
        wherever in a dedupe period it was first seen, and new again a period after that."""
        period = DEDUPE_PERIOD_SECONDS
        first_seen = (int(time.time() // period) + 1 + offset) * period
        clock = [first_seen]
        store = DeploymentStore(redis, clock=lambda: clock[0])
        store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"])
        for later in (3 * 24 * 3600, defaults.DEDUPE_TTL_SECONDS - 1):
            clock[0] = first_seen + later
            assert store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"]).duplicate_of is not None
        clock[0] = first_seen + defaults.DEDUPE_TTL_SECONDS + period
        assert store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"]).duplicate_of is None
        # The record's own expiry: its period's hash goes once its newest entry is past the window.
        expires = redis.expiretime(keys.seen(int(first_seen // period)))
        assert first_seen + defaults.DEDUPE_TTL_SECONDS <= expires <= first_seen + defaults.DEDUPE_TTL_SECONDS + period

    def test_concurrent_submits_keep_one_queued_deployment(self, redis_url: str, redis: redis_lib.Redis) -> None:
        """Many pushes at once still leave exactly one queued deployment and one job for the app."""
        def submit(i: int) -> None:
            DeploymentStore(connect(redis_url)).intake.submit([push("shop", f"{i:040x}")])

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store = DeploymentStore(redis)
        states = [d.state for d in store.recent(limit=100)]
        assert states.count(DeploymentState.QUEUED) == 1
        assert states.count(DeploymentState.SUPERSEDED) == 19
        assert len(Queue(defaults.QUEUE_NAME, connection=redis).job_ids) == 1


class TestTransitions:
    def test_start_and_finish_record_times_and_live_release(self, store: DeploymentStore) -> None:
        """queued → running → succeeded stamps the times and records the live sha."""
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        running = store.start(dep.id, previous_sha="")
        assert running is not None and running.started_at is not None
        assert store.queued_id("shop") is None
        done = store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=SHA_A)
        assert done is not None and done.finished_at is not None
        live = store.live("shop")
        assert live is not None and live.sha == SHA_A and live.deployment_id == dep.id

    def test_superseded_deployment_cannot_start(self, store: DeploymentStore) -> None:
        """A worker that picks up a superseded deployment gets None and must not run it."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.intake.submit([push("shop", SHA_B)])
        assert store.start(a.id, previous_sha="") is None

    def test_finish_is_once_only(self, store: DeploymentStore) -> None:
        """A final state is final: a second finish changes nothing."""
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.start(dep.id, "")
        assert store.finish(dep.id, DeploymentState.FAILED, "health check failed") is not None
        assert store.finish(dep.id, DeploymentState.SUCCEEDED) is None
        assert store.get(dep.id).state is DeploymentState.FAILED

    def test_cancel_ends_a_queued_deployment_at_once(self, store: DeploymentStore) -> None:
        """Cancelling a queued deployment ends it `cancelled` and removes its job; an ended one is a Conflict."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        assert store.cancel(a.id, "alice").state is DeploymentState.CANCELLED
        assert store.queue.job_ids == []
        assert store.logs.read(a.id)[0][-1] == "cancelled by alice"
        with pytest.raises(Conflict, match="is cancelled, only a queued, waiting or running one can be cancelled"):
            store.cancel(a.id)
        with pytest.raises(NotFound):
            store.cancel("999")

    def test_cancel_of_a_running_deployment_is_recorded_for_its_job(self, redis: redis_lib.Redis) -> None:
        """A running deployment stays running with the request recorded and logged (the first operator's name
        kept), and no state change reaches the outbox; once it ended, a cancel is a Conflict."""
        store = DeploymentStore(redis, listeners=LISTENERS)
        b = store.intake.submit([push("shop", SHA_B)]).deployments[0]
        store.start(b.id, "")

        def outbox() -> dict[bytes, bytes | None]:
            return {k: redis.dump(k) for k in redis.scan_iter(f"{keys.OUTBOX_PREFIX}*")}

        events = outbox()
        assert events, "the start wrote outbox events: the comparison below can fail"
        asked = store.cancel(b.id, "alice")
        assert (asked.state, asked.cancel_requested_by) == (DeploymentState.RUNNING, "alice")
        assert store.cancel(b.id, "bob").cancel_requested_by == "alice"
        assert store.cancel_requester(b.id) == "alice"
        assert store.get(b.id).to_json()["cancel_requested_by"] == "alice"
        assert store.logs.read(b.id)[0].count("cancel requested by alice") == 1
        assert outbox() == events
        store.finish(b.id, DeploymentState.SUCCEEDED)
        with pytest.raises(Conflict, match="is succeeded"):
            store.cancel(b.id, "alice")

    @pytest.mark.parametrize("name", ["next", "1:log", "", "-1", "1 ", "\u00b2", "1\n"])
    def test_a_name_that_is_not_an_id_finds_nothing(self, store: DeploymentStore, name: str) -> None:
        """find, get and cancel treat anything but digits as no deployment, never reading the counter or a log."""
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.logs.append(dep.id, "a line")
        assert store.find(name) is None
        with pytest.raises(NotFound):
            store.get(name)
        with pytest.raises(NotFound):
            store.cancel(name)
        assert store.get(dep.id).state is DeploymentState.QUEUED

    def test_reaper_ends_running_deployments_whose_lock_is_gone(self, store: DeploymentStore,
                                                                 redis: redis_lib.Redis) -> None:
        """A running deployment whose worker no longer holds the app lock ends error."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        redis.set(keys.app_lock("shop"), a.id)
        store.start(a.id, "")
        assert store.reap_abandoned() == []
        redis.delete(keys.app_lock("shop"))
        reaped = store.reap_abandoned()
        assert [d.id for d in reaped] == [a.id]
        assert store.get(a.id).state is DeploymentState.ERROR
        assert "worker" in store.get(a.id).error


class TestListAndLog:
    def test_list_is_newest_first_with_filters(self, store: DeploymentStore) -> None:
        """Listing returns newest first and filters by app, state and limit."""
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        b = store.intake.submit([push("blog", SHA_B)]).deployments[0]
        c = store.intake.submit([push("shop", SHA_C)]).deployments[0]
        assert [d.id for d in store.recent()] == [c.id, b.id, a.id]
        assert [d.id for d in store.recent(app="shop")] == [c.id, a.id]
        assert [d.id for d in store.recent(state="superseded")] == [a.id]
        assert [d.id for d in store.recent(limit=1)] == [c.id]

    def test_log_reads_from_a_cursor(self, store: DeploymentStore) -> None:
        """Log lines come back in order, and a cursor returns only newer ones."""
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.logs.append(dep.id, "one")
        lines, cursor = store.logs.read(dep.id)
        assert lines[-1] == "one"
        store.logs.append(dep.id, "two")
        assert store.logs.read(dep.id, cursor)[0] == ["two"]

    def test_follow_log_ends_when_the_deployment_ends(self, store: DeploymentStore) -> None:
        """Following a log yields new lines as they come and stops at the final state."""
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        store.start(dep.id, "")

        def finish_later() -> None:
            store.logs.append(dep.id, "building")
            store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=SHA_A)

        timer = threading.Timer(0.3, finish_later)
        timer.start()
        lines = list(store.follow_log(dep.id, poll_ms=100))
        timer.join()
        assert "building" in lines and lines[-1] == "finished: succeeded"



class TestRedisOutage:
    def test_unreachable_redis_raises_redis_unavailable_and_writes_nothing(self, own_redis: RedisServer) -> None:
        """With Redis down, submit fails with RedisUnavailable; once it is back, nothing half-written is there."""
        store = DeploymentStore(connect(own_redis.url))
        store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"])
        own_redis.stop()
        with pytest.raises(RedisUnavailable, match="Redis is unreachable"):
            store.intake.submit([push("shop", SHA_B, "d2")], ["delivery:github:d2"])
        own_redis.start()
        assert [d.sha for d in store.recent()] == [SHA_A]
        assert store.queue.job_ids == [job_id_for(store.recent()[0].id)]
        after = store.intake.submit([push("shop", SHA_B, "d2")], ["delivery:github:d2"])
        assert after.duplicate_of is None and after.deployments[0].sha == SHA_B
        assert [d.sha for d in store.recent()] == [SHA_B, SHA_A]


    def test_connection_redis_closed_is_replaced(self, redis: redis_lib.Redis, redis_url: str) -> None:
        """A pooled connection Redis dropped (timeout, CLIENT KILL, restart) costs the next submit nothing."""
        store = DeploymentStore(connect(redis_url))
        store.intake.submit([push("shop", SHA_A, "d1")], ["delivery:github:d1"])
        # Only the store's own pooled connection: the server may have other clients (parallel tests).
        pooled = store.redis.client_id()
        assert redis.client_kill_filter(_id=pooled) == 1
        after = store.intake.submit([push("shop", SHA_B, "d2")], ["delivery:github:d2"])
        assert after.duplicate_of is None
        assert [d.sha for d in store.recent()] == [SHA_B, SHA_A]


class TestIntake:
    """The web side records deployments in one script; dispatchers write their jobs and events after."""

    def test_jobs_and_events_follow_on_dispatch(self, redis: redis_lib.Redis) -> None:
        """Without inline dispatch a submit writes the record only; dispatch adds its job and listener events."""
        heard: list[tuple[str, str]] = []
        store = DeploymentStore(redis, listeners=[lambda pipe, d: heard.append((d.id, str(d.state)))],
                                dispatch_inline=False)
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        assert store.get(dep.id).state is DeploymentState.QUEUED
        assert store.queue.job_ids == [] and heard == []
        assert store.intake.dispatch() == 1
        assert store.queue.job_ids == [job_id_for(dep.id)]
        assert heard == [(dep.id, "queued")]
        assert store.intake.dispatch() == 0

    def test_superseded_before_dispatch_never_gets_a_job(self, redis: redis_lib.Redis) -> None:
        """A deployment replaced before its entry was dispatched gets its final event and no job."""
        heard: list[tuple[str, str]] = []
        store = DeploymentStore(redis, listeners=[lambda pipe, d: heard.append((d.id, str(d.state)))],
                                dispatch_inline=False)
        a = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        b = store.intake.submit([push("shop", SHA_B)]).deployments[0]
        assert store.intake.dispatch() == 2
        assert store.queue.job_ids == [job_id_for(b.id)]
        assert heard == [(a.id, "superseded"), (b.id, "queued")]

    def test_dispatch_logs_each_queued_deployment(self, redis: redis_lib.Redis,
                                                  caplog: pytest.LogCaptureFixture) -> None:
        """The server log's line per accepted push comes from the dispatcher: id, app, sha, delivery."""
        caplog.set_level(logging.INFO, logger="hooksvc.intake")
        store = DeploymentStore(redis, dispatch_inline=False)
        a = store.intake.submit([push("shop", SHA_A, "d1")]).deployments[0]
        b = store.intake.submit([push("shop", SHA_B, "d2")]).deployments[0]
        assert caplog.text == ""
        store.intake.dispatch()
        assert f"deployment {b.id} of shop queued: push of {SHA_B[:12]} (refs/heads/main), delivery d2" in caplog.text
        assert f"deployment(s) {a.id} superseded" in caplog.text
        assert store.logs.read(b.id)[0] == [f"queued push of {SHA_B} (refs/heads/main)"]

    def test_entries_of_a_dead_dispatcher_are_recovered(self, redis: redis_lib.Redis) -> None:
        """An entry left in processing by a dispatcher that died goes back to the intake and is dispatched."""
        store = DeploymentStore(redis, dispatch_inline=False)
        dep = store.intake.submit([push("shop", SHA_A)]).deployments[0]
        redis.lmove("hooksvc:intake", "hooksvc:intake:processing", "LEFT", "RIGHT")  # taken, then the dispatcher died
        assert store.intake.recover(older_than=3600) == 0
        assert store.intake.recover(older_than=0) == 1
        assert store.intake.dispatch() == 1
        assert store.queue.job_ids == [job_id_for(dep.id)]
        assert redis.llen("hooksvc:intake:processing") == 0

    def test_dispatcher_blocks_until_intake_arrives(self, redis: redis_lib.Redis, redis_url: str) -> None:
        """A blocked dispatcher wakes as soon as a submit lands."""
        store = DeploymentStore(redis, dispatch_inline=False)
        done: list[int] = []
        waiter = threading.Thread(target=lambda: done.append(DeploymentStore(
            connect(redis_url), dispatch_inline=False).intake.dispatch(block_seconds=1.5)))
        waiter.start()
        store.intake.submit([push("shop", SHA_A)])
        waiter.join(timeout=5)
        assert done == [1]

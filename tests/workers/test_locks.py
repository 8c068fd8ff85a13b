"""The per-app deploy lock against a real Redis: exclusive per app, independent across apps, renewed, expiring."""

from __future__ import annotations

import time

import redis as redis_lib

from hooksvc import keys
from workers.locks import AppLock


def _holder(redis: redis_lib.Redis) -> str | None:
    """Who holds the shop app's lock, as Redis has it."""
    raw = redis.get(keys.app_lock("shop"))
    return raw.decode() if raw else None

class TestAppLock:
    def test_one_holder_per_app_and_apps_are_independent(self, redis: redis_lib.Redis) -> None:
        """A second deployment of the same app cannot take the lock; another app's deployment can."""
        first = AppLock(redis, keys.app_lock("shop"), "1")
        same_app = AppLock(redis, keys.app_lock("shop"), "2")
        other_app = AppLock(redis, keys.app_lock("blog"), "3")
        assert first.try_acquire()
        try:
            assert not same_app.try_acquire()
            assert other_app.try_acquire()
            other_app.release()
            assert _holder(redis) == "1"
        finally:
            first.release()
        assert same_app.try_acquire()
        same_app.release()

    def test_holder_renews_past_the_ttl(self, redis: redis_lib.Redis) -> None:
        """A live holder keeps its lock longer than the TTL by renewing it."""
        lock = AppLock(redis, keys.app_lock("shop"), "1", ttl=0.6, renew_every=0.15)
        assert lock.try_acquire()
        try:
            time.sleep(1.5)
            assert _holder(redis) == "1" and not lock.lost.is_set()
        finally:
            lock.release()
        assert _holder(redis) is None

    def test_a_dead_holders_lock_expires(self, redis: redis_lib.Redis) -> None:
        """Without renewal (its worker died) the lock frees itself within the TTL."""
        redis.set(keys.app_lock("shop"), "1", px=300)
        assert not AppLock(redis, keys.app_lock("shop"), "2").try_acquire()
        time.sleep(0.5)
        lock = AppLock(redis, keys.app_lock("shop"), "2")
        assert lock.try_acquire()
        lock.release()

    def test_release_never_frees_someone_elses_lock(self, redis: redis_lib.Redis) -> None:
        """An old holder whose lock expired and was taken over cannot delete the new holder's lock."""
        old = AppLock(redis, keys.app_lock("shop"), "1", ttl=5, renew_every=60)
        assert old.try_acquire()
        redis.set(keys.app_lock("shop"), "2")  # expired and taken by deployment 2 meanwhile
        old.release()
        assert _holder(redis) == "2"

    def test_waiting_gives_up_when_told(self, redis: redis_lib.Redis) -> None:
        """A waiting deployment stops waiting once it is no longer queued (superseded or cancelled)."""
        redis.set(keys.app_lock("shop"), "1")
        calls = iter([True, True, False])
        assert not AppLock(redis, keys.app_lock("shop"), "2").acquire(lambda: next(calls), poll=0.01)

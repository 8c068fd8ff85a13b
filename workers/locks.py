"""Leases in Redis: a key holding its owner's token, with an expiry, so a dead owner frees it.

`Lease` is the primitive (the outbox sender takes one per lane); `AppLock` is the per-app deploy
lock, a lease renewed by a thread of its holder for as long as the deployment runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

import redis

from hooksvc import defaults

log = logging.getLogger(__name__)

# Extend or release only while the key still holds our token: a lease that expired and was taken
# by someone else must never be extended or deleted by its old owner.
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Lease:
    """`key` held by `token` for `ttl_ms` at a time."""

    def __init__(self, connection: redis.Redis, key: str, token: str, ttl_ms: int) -> None:
        self.redis = connection
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms

    def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        """Another `ttl_ms` from now; False when the lease is no longer ours."""
        return bool(self.redis.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> bool:
        """Give the lease up; False when it was no longer ours."""
        return bool(self.redis.eval(_RELEASE, 1, self.key, self.token))


class AppLock:
    """Held by one deployment at a time; `token` is the deployment id, so anyone can see who holds it."""

    def __init__(
        self,
        connection: redis.Redis,
        key: str,
        token: str,
        ttl: float = defaults.LOCK_TTL_SECONDS,
        renew_every: float = defaults.LOCK_RENEW_SECONDS,
    ) -> None:
        self.lease = Lease(connection, key, token, int(ttl * 1000))
        self.key = key
        self.token = token
        self.renew_every = renew_every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        if not self.lease.acquire():
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lock-renew {self.key}", daemon=True)
        self._thread.start()
        return True

    def acquire(self, keep_waiting: Callable[[], bool], poll: float = defaults.LOCK_POLL_SECONDS) -> bool:
        """Wait for the lock while `keep_waiting()` is true; False when told to give up."""
        while keep_waiting():
            if self.try_acquire():
                return True
            time.sleep(poll)
        return False

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if not self.lease.extend():
                    log.error("lock %s was lost (expired or taken over)", self.key)
                    self.lost.set()
                    return
            except redis.RedisError as exc:
                # A Redis restart shorter than the TTL must not cost the lock: keep trying.
                log.warning("could not renew lock %s: %s", self.key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.lease.release()
        except redis.RedisError as exc:
            log.warning("could not release lock %s (it expires by itself): %s", self.key, exc)

    def __enter__(self) -> AppLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

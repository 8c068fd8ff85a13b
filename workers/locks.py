"""The per-app deploy lock: a Redis key with expiry, renewed by its holder, so a dead worker frees it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

import redis

from hooksvc import defaults

log = logging.getLogger(__name__)

# Renew or release only while the key still holds our token: a lock that expired and was taken
# by another worker must never be extended or deleted by the old holder.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


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
        self.redis = connection
        self.key = key
        self.token = token
        self.ttl_ms = int(ttl * 1000)
        self.renew_every = renew_every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        if not self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
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
                if not self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
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
            self.redis.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError as exc:
            log.warning("could not release lock %s (it expires by itself): %s", self.key, exc)

    def __enter__(self) -> AppLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holder(connection: redis.Redis, key: str) -> str | None:
    raw = connection.get(key)
    return raw.decode() if raw else None

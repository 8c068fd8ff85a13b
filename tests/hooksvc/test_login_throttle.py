"""The login throttle: failed token checks counted per address and per token, in Redis, with expiry."""

from __future__ import annotations

import time

import redis as redis_lib

from hooksvc import keys
from hooksvc.login_throttle import LoginThrottle


class TestLoginThrottle:
    def test_an_address_is_held_back_after_its_failures_for_the_rest_of_the_window(
        self, redis: redis_lib.Redis,
    ) -> None:
        """After `per_address` failures any token from that address waits out the window; others do not."""
        throttle = LoginThrottle(redis, per_address=3, per_token=100, window_seconds=60)
        for n in range(3):
            assert throttle.wait_seconds("10.0.0.1", f"guess-{n}") == 0
            throttle.record_failure("10.0.0.1", f"guess-{n}")
        assert 55 <= throttle.wait_seconds("10.0.0.1", "the-right-token") <= 60
        assert throttle.wait_seconds("10.0.0.2", "the-right-token") == 0

    def test_a_token_is_held_back_after_its_failures_from_any_address(self, redis: redis_lib.Redis) -> None:
        """After `per_token` failures of one token, that token waits from every address; other tokens do not."""
        throttle = LoginThrottle(redis, per_address=100, per_token=2, window_seconds=60)
        throttle.record_failure("10.0.0.1", "hunter2")
        throttle.record_failure("10.0.0.2", "hunter2")
        assert throttle.wait_seconds("10.0.0.3", "hunter2") > 0
        assert throttle.wait_seconds("10.0.0.3", "hunter3") == 0

    def test_the_counts_expire_with_the_window(self, redis: redis_lib.Redis) -> None:
        """The window starts at the first failure and the counts go with it: no key outlives it."""
        throttle = LoginThrottle(redis, per_address=1, per_token=1, window_seconds=1)
        throttle.record_failure("10.0.0.1", "guess")
        assert throttle.wait_seconds("10.0.0.1", "other") > 0
        time.sleep(1.2)
        assert throttle.wait_seconds("10.0.0.1", "guess") == 0
        assert redis.keys(f"{keys.LOGIN_FAILURES_PREFIX}*") == []

    def test_redis_never_holds_a_presented_token(self, redis: redis_lib.Redis) -> None:
        """A wrong token may be a near miss of the right one: Redis keeps only a hash of it."""
        LoginThrottle(redis).record_failure("10.0.0.1", "op-token-l")
        names = b" ".join(redis.keys("*"))
        assert b"op-token-l" not in names
        assert all(b"op-token-l" not in (redis.get(k) or b"") for k in redis.keys("*"))

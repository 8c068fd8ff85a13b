"""Counting failed token checks, per client address and per presented token, in Redis.

Every check of an operator token (the login form, basic auth, a bearer token) asks first whether
its address or its token has failed too often in the current window, and counts a failure when
the token is wrong. Only failures count: the right token is never held back by others' wrong
ones, unless it comes from an address that itself failed too often.
"""

from __future__ import annotations

import hashlib

import redis

from hooksvc import defaults, keys
from hooksvc.connection import call


def _token_digest(token: str) -> str:
    # A wrong token is no secret, but it may be a near miss of the right one: Redis keeps a hash.
    return hashlib.sha256(b"hooksvc-login-throttle\n" + token.encode()).hexdigest()


class LoginThrottle:
    """Failed token checks per address and per token within `defaults.LOGIN_FAILURE_WINDOW_SECONDS`."""

    def __init__(
        self,
        connection: redis.Redis,
        per_address: int = defaults.LOGIN_FAILURES_PER_ADDRESS,
        per_token: int = defaults.LOGIN_FAILURES_PER_TOKEN,
        window_seconds: int = defaults.LOGIN_FAILURE_WINDOW_SECONDS,
    ) -> None:
        self.redis = connection
        self.per_address = per_address
        self.per_token = per_token
        self.window_seconds = window_seconds

    def _keys(self, address: str, token: str) -> tuple[str, str]:
        return keys.login_failures_address(address), keys.login_failures_token(_token_digest(token))

    def wait_seconds(self, address: str, token: str) -> int:
        """0 when this address may try this token now, else the seconds until its window ends."""
        address_key, token_key = self._keys(address, token)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(address_key)
        pipe.get(token_key)
        pipe.ttl(address_key)
        pipe.ttl(token_key)
        by_address, by_token, address_ttl, token_ttl = call(pipe.execute)
        waits = []
        if by_address is not None and int(by_address) >= self.per_address:
            waits.append(address_ttl)
        if by_token is not None and int(by_token) >= self.per_token:
            waits.append(token_ttl)
        # A counter without a TTL cannot be (it is set with one): wait a whole window then.
        return max((w if w > 0 else self.window_seconds for w in waits), default=0)

    def record_failure(self, address: str, token: str) -> None:
        """Count one wrong token from `address`; a counter's window starts with its first failure."""
        pipe = self.redis.pipeline()
        for key in self._keys(address, token):
            pipe.incr(key)
            pipe.expire(key, self.window_seconds, nx=True)
        call(pipe.execute)

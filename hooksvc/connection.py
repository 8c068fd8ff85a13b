"""The Redis connection every process opens, and the one way Redis failures reach the caller.

rq's habit: a connection is made here and passed in explicitly; nothing holds a global client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.errors import RedisUnavailable

log = logging.getLogger("hooksvc.connection")

#: Where `hooksvc run` records the address of the redis-server it started, under `state_dir`.
RUN_REDIS_RECORD = "redis/address"


def connect(url: str) -> redis.Redis:
    """A Redis client with short timeouts: webhooks must be answered within seconds."""
    return redis.Redis.from_url(
        url,
        socket_timeout=defaults.REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=defaults.REDIS_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


def redis_url(config: Config) -> str:
    """The Redis `config` means: the one it names (`[redis] url`, `$REDIS_URL`), else the private one
    that `hooksvc run` started for it (its address is recorded in `state_dir`), else the default.

    Every command with the same config so reaches the same Redis. A recorded private Redis that does
    not answer is an error that says so, never a reason to try another server.
    """
    if not config.redis.implicit:
        return config.redis.url
    record = config.worker.state_dir / RUN_REDIS_RECORD
    try:
        url = record.read_text().strip()
    except FileNotFoundError:
        log.info("no Redis configured and no `hooksvc run` recorded one in %s: using %s",
                 config.worker.state_dir, config.redis.url)
        return config.redis.url
    except OSError as exc:
        raise RedisUnavailable(f"cannot read {record}: {exc}") from None
    try:
        redis.Redis.from_url(url, socket_connect_timeout=defaults.REDIS_SOCKET_TIMEOUT_SECONDS).ping()
    except (redis.ConnectionError, redis.TimeoutError):
        raise RedisUnavailable(
            f"the config names no Redis, and the private redis-server that `hooksvc run` started for it "
            f"({url}) is not running: start `hooksvc run` (scripts/run) with this config, or set [redis] url"
        ) from None
    return url


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, with a lost or timed-out Redis turned into `RedisUnavailable` (a 503)."""
    try:
        return fn(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"Redis is unreachable: {exc}") from None


def direct_command(client: redis.Redis, *args: Any) -> Any:
    """Run one command on a connection of `client`'s pool and return Redis's unparsed reply.

    `client.execute_command` wraps every command in retry, observability and response-callback
    layers that cost as much client CPU as the round trip itself; the webhook path runs one command
    and needs none of them. The pool still checks a connection before handing it out (reconnecting
    one Redis closed), and a connection that fails is dropped and the command tried once more on a
    new one, as the client's default retry would. (When only the reply was lost the command runs
    twice; for the submit script the second run finds the first's dedupe record and answers with
    its deployments as a duplicate, so nothing is recorded twice.)
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        try:
            conn.send_command(*args)
            return conn.read_response()
        except redis.ConnectionError:
            conn.disconnect()
            conn.send_command(*args)
            return conn.read_response()
    except BaseException as exc:
        if not isinstance(exc, redis.ResponseError):
            conn.disconnect()  # a reply may be half read: never hand this connection out again
        raise
    finally:
        pool.release(conn)


def decode_hash(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A HGETALL reply as text."""
    return {k.decode(): v.decode() for k, v in raw.items()}

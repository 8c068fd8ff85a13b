"""Reading the outbox and its counters back, for assertions."""

from __future__ import annotations

import redis

from hooksvc import keys

#: Every counter the outbox sender keeps.
OUTBOX_COUNTERS = (
    keys.STATUS_SENT, keys.STATUS_FAILURES, keys.STATUS_DROPPED,
    keys.NOTIFY_SENT, keys.NOTIFY_FAILURES, keys.NOTIFY_DROPPED,
    keys.HOST_DEPLOYMENT_SENT, keys.HOST_DEPLOYMENT_FAILURES, keys.HOST_DEPLOYMENT_DROPPED,
    keys.CHECK_RUN_SENT, keys.CHECK_RUN_FAILURES, keys.CHECK_RUN_DROPPED,
    keys.PREVIEW_COMMENT_SENT, keys.PREVIEW_COMMENT_FAILURES, keys.PREVIEW_COMMENT_DROPPED,
)


def read_counters(connection: redis.Redis) -> dict[str, dict[str, int]]:
    """`{redis key: {host kind or target: count}}` for every outbox counter."""
    out: dict[str, dict[str, int]] = {}
    for key in OUTBOX_COUNTERS:
        out[key] = {k.decode(): int(v) for k, v in connection.hgetall(key).items()}
    return out


def outbox_backlog(connection: redis.Redis) -> int:
    """How many lanes hold undelivered events."""
    return int(connection.zcard(keys.OUTBOX_DUE))

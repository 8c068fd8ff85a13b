"""Deployment logs: one Redis stream per deployment, every line cut to `LOG_LINE_LIMIT`.

Writers are the intake dispatcher and the state machine (inside their transactions), the worker
running the deployment, and the outbox sender; readers are the API, the pages and `hooksvc logs`.
Lines are redacted by whoever writes them: this module stores what it is given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import redis
from redis.client import Pipeline

from hooksvc import defaults, keys
from hooksvc.connection import call
from hooksvc.errors import BadRequest

#: Where a step writes its progress: one line at a time, already redacted.
LogFn = Callable[[str], None]

#: The longest one blocking read of a log stream waits: well under the Redis client's socket timeout.
BLOCK_STEP_MS = min(1000, int(defaults.REDIS_SOCKET_TIMEOUT_SECONDS * 1000) // 2)

# ASCII digits only (`\d` takes any script's), and the whole text (`$` allows a trailing newline).
_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
#: Each half of a Redis stream id is an unsigned 64-bit number.
_CURSOR_PART_MAX = 2**64 - 1


def parse_cursor(text: str) -> str:
    """`text` when it is a log cursor (a Redis stream id, `1700000000000-0`), else BadRequest.

    Redis refuses an id whose halves do not fit in 64 bits: checked here, so such a cursor is the
    client's mistake (400), not a server error.
    """
    match = _CURSOR.fullmatch(text)
    if match is None or any(int(part) > _CURSOR_PART_MAX for part in match.groups()):
        raise BadRequest(f"'after' must be a log cursor like 1700000000000-0, got {text[:60]!r}")
    return text


class DeploymentLogs:
    """Append to and read deployments' log streams."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def append(self, deployment_id: str, line: str) -> None:
        call(self.redis.xadd, keys.deployment_log(deployment_id), {"line": line[: defaults.LOG_LINE_LIMIT]})

    @staticmethod
    def append_in(pipe: Pipeline, deployment_id: str, line: str) -> None:
        """Append inside a caller's transaction (the line is written if and only if it commits)."""
        pipe.xadd(keys.deployment_log(deployment_id), {"line": line[: defaults.LOG_LINE_LIMIT]})

    def read(self, deployment_id: str, after: str = "0-0", block_ms: int | None = None) -> tuple[list[str], str]:
        """Log lines after cursor `after`, and the new cursor. `block_ms` waits for new lines."""
        key = keys.deployment_log(deployment_id)
        if block_ms is None:
            entries = call(self.redis.xrange, key, f"({after}" if after != "0-0" else "-", "+")
        else:
            result = call(self.redis.xread, {key: after}, block=block_ms)
            entries = result[0][1] if result else []
        lines = [fields[b"line"].decode("utf-8", "replace") for _, fields in entries]
        cursor = entries[-1][0].decode() if entries else after
        return lines, cursor

    def wait_for_lines(self, deployment_id: str, after: str, wait_ms: int,
                       abandoned: Callable[[], bool] = lambda: False) -> tuple[list[str], str]:
        """Like `read`, but waits up to `wait_ms` for lines after `after` when there are none yet
        (and stops waiting once `abandoned()`: the reader went away).

        Each blocking read lasts at most BLOCK_STEP_MS: one longer than the client's socket timeout
        (REDIS_SOCKET_TIMEOUT_SECONDS) would end in a timeout error instead of an empty answer.
        """
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or abandoned():
                return [], after
            lines, cursor = self.read(deployment_id, after, block_ms=min(BLOCK_STEP_MS, remaining_ms))
            if lines:
                return lines, cursor

    def follow(self, deployment_id: str, finished: Callable[[], bool], poll_ms: int = 1000,
               max_seconds: float | None = None, abandoned: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Every line, then new ones as they come, until `finished()` (then the last lines too).

        `max_seconds`: stop following after this long even when not finished (the caller says so).
        `abandoned`: stop as soon as it says the reader went away (checked once per poll).
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        cursor = "0-0"
        while True:
            lines, cursor = self.read(deployment_id, cursor)
            yield from lines
            if finished():
                lines, cursor = self.read(deployment_id, cursor)
                yield from lines
                return
            if deadline is not None and time.monotonic() >= deadline or abandoned():
                return
            lines, cursor = self.read(deployment_id, cursor, block_ms=poll_ms)
            yield from lines

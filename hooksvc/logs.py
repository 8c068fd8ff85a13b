"""Deployment logs: one Redis stream per deployment, every line cut to `LOG_LINE_LIMIT`, every log to
`LOG_CAP_BYTES`.

Writers are the intake dispatcher and the state machine (inside their transactions), the worker
running the deployment, and the outbox sender; readers are the API, the pages and `hooksvc logs`.
Lines are redacted by whoever writes them: this module stores what it is given.

The cap: a log keeps its first `LOG_CAP_BYTES - LOG_TAIL_BYTES` of lines as they come. The line that
would go over them is preceded by a marker entry, and from then on the log keeps only its last
`LOG_TAIL_BYTES`: each new line drops the oldest line after the marker. So a stored log is its start,
a line saying how many lines (and bytes) were cut there, and its end — where a failed build's error
is. Someone following the log live sees every line. The state machine's lines (`queued`, `finished:
…`) are written in its transactions, outside the count, and are never what a later line drops first:
the outcome stays readable.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator

import redis
from redis.client import Pipeline

from hooksvc import defaults, keys
from hooksvc.connection import call
from hooksvc.disk_usage import format_bytes
from hooksvc.errors import BadRequest

#: Where a step writes its progress: one line at a time, already redacted.
LogFn = Callable[[str], None]

#: The marker entry's field: readers show the marker with what was cut so far.
CUT_FIELD = b"cut"

# KEYS: the log stream, its size hash. ARGV: the line, the bytes kept before the cut, the bytes kept
# at the end, the marker's text. Returns the line's entry id. Lua's `#` counts bytes, as the cap does.
# `written` counts every byte appended, so a log under its cap costs one HINCRBY besides its XADD.
APPEND_SCRIPT = """
local line, tail_limit = ARGV[1], tonumber(ARGV[3])
local size = #line
if redis.call('HINCRBY', KEYS[2], 'written', size) <= tonumber(ARGV[2]) then
  return redis.call('XADD', KEYS[1], '*', 'line', line)
end
local state = redis.call('HMGET', KEYS[2], 'marker', 'tail')
local marker = state[1]
if not marker then
  marker = redis.call('XADD', KEYS[1], '*', 'line', ARGV[4], 'cut', '1')
  redis.call('HSET', KEYS[2], 'marker', marker)
end
local id = redis.call('XADD', KEYS[1], '*', 'line', line)
local tail = tonumber(state[2] or '0') + size
local lines, bytes = 0, 0
while tail > tail_limit do
  local oldest = redis.call('XRANGE', KEYS[1], '(' .. marker, '+', 'COUNT', 1)[1]
  if oldest == nil or oldest[1] == id then break end
  local dropped = #oldest[2][2]
  redis.call('XDEL', KEYS[1], oldest[1])
  tail, lines, bytes = tail - dropped, lines + 1, bytes + dropped
end
redis.call('HSET', KEYS[2], 'tail', math.max(tail, 0))
if lines > 0 then
  redis.call('HINCRBY', KEYS[2], 'cut_lines', lines)
  redis.call('HINCRBY', KEYS[2], 'cut_bytes', bytes)
end
return id
"""


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

    def __init__(self, connection: redis.Redis, cap_bytes: int = defaults.LOG_CAP_BYTES,
                 tail_bytes: int = defaults.LOG_TAIL_BYTES) -> None:
        self.redis = connection
        self.cap_bytes = cap_bytes
        self.tail_bytes = tail_bytes
        self._append = connection.register_script(APPEND_SCRIPT)
        #: The marker as it is stored, and as it reads until a line is cut.
        self._marker = (f"[log over {format_bytes(cap_bytes)}: lines from here on are kept only as the log's last "
                        f"{format_bytes(tail_bytes)}]")

    def append(self, deployment_id: str, line: str) -> None:
        """Append a line, within the log's cap (see the module's docstring)."""
        call(self._append, keys=[keys.deployment_log(deployment_id), keys.deployment_log_size(deployment_id)],
             args=[line[: defaults.LOG_LINE_LIMIT], self.cap_bytes - self.tail_bytes, self.tail_bytes, self._marker])

    def append_many(self, deployment_id: str, lines: Iterable[str]) -> None:
        """Append lines in one round trip, each as `append` does."""
        log_keys = [keys.deployment_log(deployment_id), keys.deployment_log_size(deployment_id)]
        head = self.cap_bytes - self.tail_bytes
        with self.redis.pipeline(transaction=False) as pipe:
            for line in lines:
                self._append(keys=log_keys, args=[line[: defaults.LOG_LINE_LIMIT], head, self.tail_bytes, self._marker],
                             client=pipe)
            call(pipe.execute)

    @staticmethod
    def append_in(pipe: Pipeline, deployment_id: str, line: str) -> None:
        """Append inside a caller's transaction (the line is written if and only if it commits).

        For the state machine's few lines: they are not counted against the cap (see the module)."""
        pipe.xadd(keys.deployment_log(deployment_id), {"line": line[: defaults.LOG_LINE_LIMIT]})

    def read(self, deployment_id: str, after: str = "0-0", block_ms: int | None = None) -> tuple[list[str], str]:
        """Log lines after cursor `after`, and the new cursor. `block_ms` waits for new lines."""
        key = keys.deployment_log(deployment_id)
        if block_ms is None:
            entries = call(self.redis.xrange, key, f"({after}" if after != "0-0" else "-", "+")
        else:
            result = call(self.redis.xread, {key: after}, block=block_ms)
            entries = result[0][1] if result else []
        lines = [self._cut_line(deployment_id) if CUT_FIELD in fields else fields[b"line"].decode("utf-8", "replace")
                 for _, fields in entries]
        cursor = entries[-1][0].decode() if entries else after
        return lines, cursor

    def _cut_line(self, deployment_id: str) -> str:
        """The marker where the log was cut, saying what was cut there so far."""
        cut_lines, cut_bytes = call(self.redis.hmget, keys.deployment_log_size(deployment_id),
                                    "cut_lines", "cut_bytes")
        if not cut_lines:
            return self._marker
        return (f"[{int(cut_lines):,} lines ({format_bytes(int(cut_bytes))}) cut here: a log keeps its first "
                f"{format_bytes(self.cap_bytes - self.tail_bytes)} and its last {format_bytes(self.tail_bytes)}]")

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

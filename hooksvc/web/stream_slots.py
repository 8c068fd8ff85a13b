"""How many long requests (followed logs, log long-polls) one web process serves at once.

Waitress runs each request on one of a process's request threads, and a followed log or a
long-poll holds its thread for as long as it lasts. Unbounded, forty readers took every thread
and a signed push waited 30 s. So long requests share a fixed number of slots, fewer than the
threads (the rest always serve webhooks and /healthz), and one client address may hold only a few
of them; a request beyond either bound is refused at once with Retry-After instead of waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hooksvc import defaults
from hooksvc.errors import ServerBusy, TooManyRequests


def slots_for(threads: int) -> int:
    """Long requests a process with `threads` request threads serves at once (at least one)."""
    return max(1, int(threads * defaults.STREAM_THREAD_SHARE))


class StreamSlots:
    """Counts the long requests in progress in this process, in total and per client address."""

    def __init__(self, total: int, per_client: int = defaults.STREAMS_PER_CLIENT) -> None:
        self.total = total
        self.per_client = per_client
        self._lock = threading.Lock()
        self._in_use = 0
        self._by_client: dict[str, int] = {}

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, client: str, *, limit_client: bool) -> Callable[[], None]:
        """Take a slot for `client` and return what gives it back (call it exactly once).

        `limit_client`: count the slot against the client's share too (anonymous readers; an
        operator's own credentials are enough to tell one operator from an attacker).
        Raises ServerBusy (503) when every slot is taken, TooManyRequests (429) when the client's are.
        """
        with self._lock:
            if limit_client and self._by_client.get(client, 0) >= self.per_client:
                raise TooManyRequests(
                    f"this address already follows {self.per_client} logs here: close one, or retry later",
                    defaults.STREAM_RETRY_AFTER_SECONDS,
                )
            if self._in_use >= self.total:
                raise ServerBusy(
                    f"all {self.total} log followers this server process serves at once are busy: retry later",
                    defaults.STREAM_RETRY_AFTER_SECONDS,
                )
            self._in_use += 1
            if limit_client:
                self._by_client[client] = self._by_client.get(client, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._in_use -= 1
                if limit_client:
                    left = self._by_client[client] - 1
                    if left:
                        self._by_client[client] = left
                    else:
                        del self._by_client[client]

        return release

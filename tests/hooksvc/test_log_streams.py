"""Deployment log streams: cursors from outside, and waiting for lines longer than a socket timeout."""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_lib

from hooksvc import defaults
from hooksvc.connection import connect
from hooksvc.errors import BadRequest
from hooksvc.logs import DeploymentLogs, parse_cursor
from tests.helpers.config import TEST_REDIS_URL


class TestParseCursor:
    @pytest.mark.parametrize("cursor", ["0-0", "1700000000000-0", "18446744073709551615-18446744073709551615"])
    def test_stream_ids_redis_reads_pass(self, cursor: str) -> None:
        """Every id whose halves fit in 64 bits is a cursor."""
        assert parse_cursor(cursor) == cursor

    @pytest.mark.parametrize("cursor", [
        "99999999999999999999-0", "0-18446744073709551616", "1", "1-2-3", "-1-0", "1-x", "", "1-0\n", "١-0",
    ])
    def test_anything_else_is_a_bad_request_naming_the_parameter(self, cursor: str) -> None:
        """A cursor Redis would refuse (past 64 bits, not an id) is the client's 400, never a server error."""
        with pytest.raises(BadRequest, match="'after' must be a log cursor"):
            parse_cursor(cursor)

    def test_the_message_quotes_a_long_cursor_cut_short(self) -> None:
        """A huge cursor is quoted in the error only in part."""
        with pytest.raises(BadRequest) as exc:
            parse_cursor("9" * 10_000)
        assert len(str(exc.value)) < 200


class TestWaitForLines:
    @pytest.fixture
    def logs(self, redis: redis_lib.Redis) -> DeploymentLogs:
        """Logs on a client with hooksvc's own socket timeout, as the web processes have."""
        return DeploymentLogs(connect(TEST_REDIS_URL))

    def test_waits_longer_than_the_socket_timeout_without_an_error(self, logs: DeploymentLogs) -> None:
        """A wait of more than REDIS_SOCKET_TIMEOUT_SECONDS ends empty at its end (it was a 503 after 2 s)."""
        logs.append("1", "first")
        _, cursor = logs.read("1")
        wait_ms = int(defaults.REDIS_SOCKET_TIMEOUT_SECONDS * 1000) + 1500
        started = time.monotonic()
        assert logs.wait_for_lines("1", cursor, wait_ms) == ([], cursor)
        assert wait_ms / 1000 - 0.1 < time.monotonic() - started < wait_ms / 1000 + 1.5

    def test_a_line_written_during_the_wait_ends_it(self, logs: DeploymentLogs) -> None:
        """The wait ends with the line as soon as it is written."""
        logs.append("1", "first")
        _, cursor = logs.read("1")
        timer = threading.Timer(2.5, logs.append, ("1", "late"))
        timer.start()
        started = time.monotonic()
        lines, _ = logs.wait_for_lines("1", cursor, 6000)
        timer.join()
        assert lines == ["late"] and time.monotonic() - started < 4

    def test_an_abandoned_wait_ends_within_a_step(self, logs: DeploymentLogs) -> None:
        """When the reader has gone the wait ends at the next step, not after the whole wait."""
        left = time.monotonic() + 0.5
        started = time.monotonic()
        assert logs.wait_for_lines("1", "0-0", 10_000, abandoned=lambda: time.monotonic() > left) == ([], "0-0")
        assert time.monotonic() - started < 2.5


class TestFollow:
    def test_follow_stops_at_its_time_limit(self, redis: redis_lib.Redis) -> None:
        """A follow that is never finished stops after `max_seconds` (within a poll)."""
        logs = DeploymentLogs(redis)
        logs.append("1", "only line")
        started = time.monotonic()
        assert list(logs.follow("1", lambda: False, poll_ms=200, max_seconds=0.5)) == ["only line"]
        assert time.monotonic() - started < 1.5

    def test_follow_stops_when_abandoned(self, redis: redis_lib.Redis) -> None:
        """A follow whose reader has gone stops at the next poll."""
        logs = DeploymentLogs(redis)
        gone = threading.Event()
        threading.Timer(0.3, gone.set).start()
        started = time.monotonic()
        assert list(logs.follow("1", lambda: False, poll_ms=200, abandoned=gone.is_set)) == []
        assert time.monotonic() - started < 1.5

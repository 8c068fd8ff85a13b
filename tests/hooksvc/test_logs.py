"""Deployment logs on real Redis: a log keeps its start and its end within its cap, says where it was cut
and how much, and the outcome's line stays readable."""

from __future__ import annotations

import redis as redis_lib

from hooksvc import defaults, keys
from hooksvc.disk_usage import format_bytes
from hooksvc.logs import DeploymentLogs

#: A build's chatty output line (112 bytes with its number), as the 9.1 MB log of 81,555 lines had.
CHATTY = "#12 12.34 npm WARN deprecated some-package@1.2.3: this library is no longer supported, upgrade to 2.x now"


def stored_bytes(lines: list[str]) -> int:
    return sum(len(line.encode()) for line in lines if not line.startswith("["))


def finish_line(redis: redis_lib.Redis, logs: DeploymentLogs, deployment_id: str, line: str) -> None:
    """Write `line` as the state machine does: inside its transaction."""
    with redis.pipeline(transaction=True) as pipe:
        logs.append_in(pipe, deployment_id, line)
        pipe.execute()


class TestUnderTheCap:
    def test_every_line_is_kept_and_nothing_is_said(self, redis: redis_lib.Redis) -> None:
        """A log under its cap reads back line for line, without a marker."""
        logs = DeploymentLogs(redis, cap_bytes=10_000, tail_bytes=2_000)
        written = [f"line {n}" for n in range(500)]
        for line in written:
            logs.append("1", line)
        assert logs.read("1")[0] == written


class TestTheCap:
    def test_a_long_log_keeps_its_start_its_end_and_says_what_was_cut(self, redis: redis_lib.Redis) -> None:
        """Over the cap: the first lines up to cap minus tail, a marker counting the lines and bytes cut,
        then the last lines up to the tail, then the outcome; nothing is lost but the middle."""
        logs = DeploymentLogs(redis, cap_bytes=10_000, tail_bytes=2_000)
        written = [f"{n:05d} " + "x" * 44 for n in range(1_000)]  # 50 bytes each: 50,000 bytes
        for line in written:
            logs.append("1", line)
        finish_line(redis, logs, "1", "finished: failed: npm ERR! missing script: build")

        lines, _ = logs.read("1")
        cut = [i for i, line in enumerate(lines) if line.startswith("[")]
        assert len(cut) == 1
        head, marker, tail = lines[: cut[0]], lines[cut[0]], lines[cut[0] + 1:]
        assert head == written[:160]  # 8,000 bytes
        assert tail[-1] == "finished: failed: npm ERR! missing script: build"
        assert tail[:-1] == written[-40:]  # 2,000 bytes
        assert marker == "[800 lines (39.1 KiB) cut here: a log keeps its first 7.8 KiB and its last 2.0 KiB]"
        assert stored_bytes(head) + stored_bytes(tail[:-1]) <= 10_000

    def test_a_follower_sees_every_line_as_it_comes(self, redis: redis_lib.Redis) -> None:
        """The cap trims what is stored, not what someone following the log live is shown."""
        logs = DeploymentLogs(redis, cap_bytes=1_000, tail_bytes=200)
        cursor, seen = "0-0", []
        written = [f"{n:04d} " + "y" * 15 for n in range(300)]
        for line in written:
            logs.append("1", line)
            new, cursor = logs.read("1", cursor)
            seen += new
        assert [line for line in seen if not line.startswith("[")] == written
        assert seen[40].startswith("[log over 1000 B: lines from here on are kept only")

    def test_the_outcome_stays_readable_after_later_lines(self, redis: redis_lib.Redis) -> None:
        """Lines written after the outcome (a status report) do not push the `finished:` line out."""
        logs = DeploymentLogs(redis, cap_bytes=2_000, tail_bytes=500)
        for n in range(200):
            logs.append("1", f"{n:03d} " + "z" * 16)
        finish_line(redis, logs, "1", "finished: succeeded")
        logs.append("1", "report: github status success sent")
        assert logs.read("1")[0][-2:] == ["finished: succeeded", "report: github status success sent"]

    def test_the_default_cap_holds_a_chatty_builds_log_to_five_mib(self, redis: redis_lib.Redis) -> None:
        """The 81,555 lines (9.1 MB) of one 30 s build keep 5 MiB of text: the first 4 MiB, a marker
        counting the lines cut, the last 1 MiB; Redis holds well under the 11.4 MB it held."""
        logs = DeploymentLogs(redis)
        written = [f"{n:06d} {CHATTY}" for n in range(81_555)]
        for start in range(0, len(written), 5_000):
            logs.append_many("1", written[start:start + 5_000])
        lines, _ = logs.read("1")
        size = len(written[0].encode())
        head = (defaults.LOG_CAP_BYTES - defaults.LOG_TAIL_BYTES) // size
        tail = defaults.LOG_TAIL_BYTES // size
        assert sum(len(line.encode()) for line in written) > 9_100_000
        assert lines == [*written[:head], lines[head], *written[-tail:]]
        cut = len(written) - head - tail
        assert lines[head] == (f"[{cut:,} lines ({format_bytes(cut * size)}) cut here: a log keeps its "
                               "first 4.0 MiB and its last 1.0 MiB]")
        assert stored_bytes(lines) <= defaults.LOG_CAP_BYTES
        memory = redis.memory_usage(keys.deployment_log("1"))
        assert memory is not None and memory < 7_000_000

"""The audit trail in Redis: entries round-trip, list newest first, filter, and stay bounded."""

from __future__ import annotations

import time

import redis as redis_lib

from hooksvc import audit, defaults
from hooksvc.audit import AuditEntry


def _entry(**overrides: str) -> AuditEntry:
    fields = {"action": audit.DEPLOY, "result": audit.OK, "operator": "alice", "app": "shop", **overrides}
    return AuditEntry(**fields)  # type: ignore[arg-type]


class TestRecord:
    def test_an_entry_round_trips_with_its_id_and_time(self, redis: redis_lib.Redis) -> None:
        """A recorded entry reads back with every field, an id and the time it was recorded."""
        before = time.time()
        recorded = audit.record(redis, AuditEntry(
            action=audit.ROLLBACK, result=audit.OK, operator="alice", app="shop", sha="a" * 40, deployment="7",
            address="10.0.0.1", user_agent="curl/8", reason="bad release"))
        assert recorded.id and before - 1 <= recorded.at <= time.time() + 1
        [found] = audit.recent(redis)
        assert found == recorded
        assert found.to_json()["at"].endswith("Z") and found.to_json()["deployment"] == "7"

    def test_missing_fields_read_back_as_none(self, redis: redis_lib.Redis) -> None:
        """A failed login has no operator, app or sha: they come back as None, not as empty text."""
        audit.record(redis, AuditEntry(action=audit.LOGIN, result=audit.FAILED, address="10.0.0.9"))
        [found] = audit.recent(redis)
        assert (found.operator, found.app, found.sha, found.deployment) == (None, None, None, None)

    def test_free_text_is_cut_short_and_printable(self, redis: redis_lib.Redis) -> None:
        """A user agent or reason holding control characters or megabytes is stored escaped and cut."""
        audit.record(redis, _entry(user_agent="evil\n[fake] line" + "x" * 10_000, reason="r" * 10_000))
        [found] = audit.recent(redis)
        assert "\n" not in found.user_agent
        assert len(found.user_agent) == len(found.reason) == defaults.AUDIT_TEXT_MAX_CHARS

    def test_the_trail_keeps_only_the_newest_entries(self, redis: redis_lib.Redis) -> None:
        """Beyond `keep` entries, the oldest are dropped."""
        for n in range(5):
            audit.record(redis, _entry(deployment=str(n)), keep=3)
        assert [e.deployment for e in audit.recent(redis)] == ["4", "3", "2"]


class TestRecent:
    def test_entries_list_newest_first_filtered_by_app_and_operator(self, redis: redis_lib.Redis) -> None:
        """Filters by app, by operator, by both, and the limit counts matching entries only."""
        for operator, app in [("alice", "shop"), ("bob", "shop"), ("alice", "blog"), ("alice", "shop")]:
            audit.record(redis, _entry(operator=operator, app=app))
        assert [(e.operator, e.app) for e in audit.recent(redis)] == [
            ("alice", "shop"), ("alice", "blog"), ("bob", "shop"), ("alice", "shop")]
        assert [e.operator for e in audit.recent(redis, app="shop")] == ["alice", "bob", "alice"]
        assert [e.app for e in audit.recent(redis, operator="alice")] == ["shop", "blog", "shop"]
        assert len(audit.recent(redis, app="shop", operator="alice")) == 2
        assert len(audit.recent(redis, operator="alice", limit=1)) == 1

    def test_a_filter_looks_past_the_first_batch(self, redis: redis_lib.Redis) -> None:
        """A rare operator's entries are found behind many newer ones of others."""
        audit.record(redis, _entry(operator="carol"))
        for _ in range(250):
            audit.record(redis, _entry())
        assert [e.operator for e in audit.recent(redis, operator="carol", limit=5)] == ["carol"]

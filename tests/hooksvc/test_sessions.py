"""Operator sessions in Redis: a random id in the cookie, a record that expires, revocation."""

from __future__ import annotations

import hashlib

import redis as redis_lib

from hooksvc import keys
from hooksvc.sessions import SessionStore, credential_fingerprint


class TestSessionStore:
    def test_a_session_round_trips_and_expires_with_its_lifetime(self, redis: redis_lib.Redis) -> None:
        """A new session reads back with who, how and from where it logged in; its record expires."""
        store = SessionStore(redis, lifetime_seconds=120)
        session_id = store.create(credential=credential_fingerprint("tok"), address="10.0.0.1", operator="alice")
        found = store.get(session_id)
        assert found is not None
        assert (found.operator, found.credential, found.address) == ("alice", credential_fingerprint("tok"), "10.0.0.1")
        key = keys.session(hashlib.sha256(session_id.encode()).hexdigest())
        assert 110 < redis.ttl(key) <= 120

    def test_revoked_unknown_and_malformed_ids_find_nothing(self, redis: redis_lib.Redis) -> None:
        """After revoke the id finds nothing; nor does an id never issued, an empty one, or a huge one."""
        store = SessionStore(redis, lifetime_seconds=120)
        session_id = store.create(credential="c", address="10.0.0.1")
        store.revoke(session_id)
        assert store.get(session_id) is None
        assert store.get("never-issued") is None and store.get("") is None and store.get("x" * 10_000) is None

    def test_ids_are_random_and_redis_holds_only_their_hash(self, redis: redis_lib.Redis) -> None:
        """Two sessions of one token get unrelated ids, and no key in Redis contains an id."""
        store = SessionStore(redis, lifetime_seconds=120)
        ids = {store.create(credential=credential_fingerprint("tok"), address="a") for _ in range(2)}
        assert len(ids) == 2
        names = b" ".join(redis.keys("*")).decode()
        assert not any(session_id in names for session_id in ids)


class TestCsrfToken:
    def test_each_session_has_its_own_token_and_accepts_only_it(self, redis: redis_lib.Redis) -> None:
        """A session accepts its own CSRF token; not another session's, an empty one, or one cut short."""
        store = SessionStore(redis, lifetime_seconds=120)
        first, second = (store.get(store.create(credential="c", address="a")) for _ in range(2))
        assert first is not None and second is not None
        assert len(first.csrf_token) >= 40 and first.csrf_token != second.csrf_token
        assert first.accepts_csrf(first.csrf_token)
        assert not first.accepts_csrf(second.csrf_token)
        assert not first.accepts_csrf("") and not first.accepts_csrf(None)
        assert not first.accepts_csrf(first.csrf_token[:-1])

    def test_a_record_without_a_token_accepts_none(self, redis: redis_lib.Redis) -> None:
        """A session record written before sessions had a token accepts no form at all, not even an empty token."""
        store = SessionStore(redis, lifetime_seconds=120)
        session_id = store.create(credential="c", address="a")
        redis.hdel(keys.session(hashlib.sha256(session_id.encode()).hexdigest()), "csrf_token")
        found = store.get(session_id)
        assert found is not None and found.csrf_token == ""
        assert not found.accepts_csrf("") and not found.accepts_csrf("anything")

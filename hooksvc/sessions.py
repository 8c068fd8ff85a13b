"""Operators' login sessions, kept in Redis: the cookie holds only a random id.

Nothing in the cookie is derived from a token, so a cookie cannot be used to test guessed tokens
offline, and logging out deletes the record, so a copied cookie opens nothing afterwards. A record
says which credential opened it (a fingerprint of the token, so a changed token ends its sessions)
and the operator it belongs to (SPEC §11). Each record also holds the session's CSRF token, which
the dashboard's forms carry in a hidden field (synchronizer pattern): another site can make a
browser send the cookie, but it cannot read the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import redis

from hooksvc import keys
from hooksvc.connection import call

#: Random bytes of a session id: guessing one is hopeless.
SESSION_ID_BYTES = 32
#: Random bytes of a session's CSRF token: as hopeless to guess as the session id.
CSRF_TOKEN_BYTES = 32


def credential_fingerprint(token: str) -> str:
    """What a session record keeps of the token that opened it: enough to notice that it changed."""
    return hashlib.sha256(b"hooksvc-session-credential\n" + token.encode()).hexdigest()


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class OperatorSession:
    """One logged-in browser."""

    #: The operator's name; empty while operators are only tokens.
    operator: str
    #: `credential_fingerprint` of the token that logged in.
    credential: str
    created_at: float
    #: The client address that logged in, for the server log and `hooksvc` operators.
    address: str
    #: The role single sign-on granted at login; "" for a token's session (its role is the configured one).
    role: str = ""
    #: The token every form of this session carries (`csrf_token`); "" for a record written before there was one.
    csrf_token: str = ""

    def accepts_csrf(self, presented: str | None) -> bool:
        """Whether `presented` is this session's CSRF token (compared in constant time; never an empty one)."""
        if not self.csrf_token or not presented:
            return False
        return hmac.compare_digest(self.csrf_token.encode(), presented.encode())


class SessionStore:
    """Create, look up and revoke sessions; each record expires `lifetime_seconds` after login."""

    def __init__(self, connection: redis.Redis, lifetime_seconds: int) -> None:
        self.redis = connection
        self.lifetime_seconds = lifetime_seconds

    def create(self, *, credential: str, address: str, operator: str = "", role: str = "") -> str:
        """A new session's id, for the cookie (the only place it is kept)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        key = keys.session(_digest(session_id))
        fields = {"operator": operator, "credential": credential, "created_at": repr(time.time()), "address": address,
                  "role": role, "csrf_token": secrets.token_urlsafe(CSRF_TOKEN_BYTES)}
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.lifetime_seconds)
        call(pipe.execute)
        return session_id

    def get(self, session_id: str) -> OperatorSession | None:
        """The live session with this id, or None (unknown, expired, revoked, or not an id at all)."""
        if not session_id or len(session_id) > 2 * SESSION_ID_BYTES:
            return None
        fields = call(self.redis.hgetall, keys.session(_digest(session_id)))
        if not fields:
            return None
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return OperatorSession(
            operator=text.get("operator", ""),
            credential=text.get("credential", ""),
            created_at=float(text.get("created_at", "0")),
            address=text.get("address", ""),
            role=text.get("role", ""),
            csrf_token=text.get("csrf_token", ""),
        )

    def revoke(self, session_id: str) -> None:
        """End a session now: its cookie opens nothing from here on."""
        if session_id:
            call(self.redis.delete, keys.session(_digest(session_id)))

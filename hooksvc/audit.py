"""The audit trail: who did what, when, from where, to which app and commit, and how it ended.

Every state-changing action (deploy, redeploy, rollback, cancel, lock, unlock, a deploy through a
freeze, login and failed login) and every refused request (401, 403) is one entry in a Redis stream
capped at `defaults.AUDIT_KEEP_ENTRIES`. An entry holds names, ids and the client's address and user
agent, never a credential: callers pass no token, and free text is cut short and made printable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from hooksvc import defaults, keys
from hooksvc.connection import call
from hooksvc.redact import escape_controls

# What was done (`action`).
DEPLOY = "deploy"
REDEPLOY = "redeploy"
ROLLBACK = "rollback"
CANCEL = "cancel"
#: A pull request preview torn down on an operator's request (SPEC §13).
REMOVE_PREVIEW = "remove-preview"
LOCK = "lock"
UNLOCK = "unlock"
OVERRIDE_FREEZE = "override-freeze"
LOGIN = "login"
#: Anything else a refused request asked for (a read without credentials, a page).
ACCESS = "access"

# How it ended (`result`).
OK = "ok"
#: The action was tried and failed (a wrong token at login, a cancel of a finished deployment).
FAILED = "failed"
#: Refused before anything was tried: no or bad credentials (401), a role too low (403).
REFUSED = "refused"

_FIELDS = ("operator", "action", "app", "sha", "deployment", "address", "user_agent", "result", "reason")


def _text(value: str | None) -> str:
    return escape_controls(value or "")[: defaults.AUDIT_TEXT_MAX_CHARS]


@dataclass(frozen=True)
class AuditEntry:
    """One audited action. `id` and `at` are set when it is recorded."""

    action: str
    result: str
    operator: str | None = None
    app: str | None = None
    sha: str | None = None
    deployment: str | None = None
    address: str = ""
    user_agent: str = ""
    reason: str = ""
    id: str = ""
    at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {name: _text(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> AuditEntry:
        def optional(name: str) -> str | None:
            return fields.get(name) or None

        return cls(
            id=entry_id,
            at=int(entry_id.partition("-")[0]) / 1000,
            action=fields.get("action", ""),
            result=fields.get("result", ""),
            operator=optional("operator"),
            app=optional("app"),
            sha=optional("sha"),
            deployment=optional("deployment"),
            address=fields.get("address", ""),
            user_agent=fields.get("user_agent", ""),
            reason=fields.get("reason", ""),
        )

    def to_json(self) -> dict[str, Any]:
        """The API's shape: every field, `at` as an ISO 8601 UTC time."""
        data = asdict(self)
        data["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return data


def record(connection: redis.Redis, entry: AuditEntry, keep: int = defaults.AUDIT_KEEP_ENTRIES) -> AuditEntry:
    """Append `entry` to the trail (dropping the oldest beyond `keep`); the entry as recorded, with id and time."""
    entry_id = call(connection.xadd, keys.AUDIT, entry.to_fields(), maxlen=keep, approximate=False)
    text_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return AuditEntry.from_fields(text_id, entry.to_fields())


def recent(
    connection: redis.Redis, *, app: str | None = None, operator: str | None = None,
    limit: int = defaults.AUDIT_LIST_LIMIT,
) -> list[AuditEntry]:
    """The newest `limit` entries, newest first, of one app and/or one operator when given."""
    found: list[AuditEntry] = []
    upper = "+"
    while len(found) < limit:
        batch = call(connection.xrevrange, keys.AUDIT, upper, "-", count=max(limit, 100))
        for raw_id, raw in batch:
            entry = AuditEntry.from_fields(raw_id.decode(), {k.decode(): v.decode() for k, v in raw.items()})
            if (app is None or entry.app == app) and (operator is None or entry.operator == operator):
                found.append(entry)
                if len(found) == limit:
                    break
        if len(batch) < max(limit, 100):
            break
        upper = "(" + batch[-1][0].decode()
    return found

"""The deployment record and its states (pure: no Redis, no Flask)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hooksvc.ci_checks import waiting_text


class DeploymentState(StrEnum):
    QUEUED = "queued"
    #: Waiting for the app's lock or freeze window to end; it holds the app's queued slot.
    HELD = "held"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    #: A push whose commit's CI checks have not all passed yet (`require_checks`).
    WAITING_FOR_CHECKS = "waiting-for-checks"

    @property
    def is_final(self) -> bool:
        return self is not DeploymentState.RUNNING and not self.is_waiting

    @property
    def is_waiting(self) -> bool:
        """Not started yet: it holds the app's queued slot and ends like `queued` does (superseded,
        cancelled, or run). Every state but `queued` waits for something before it may queue."""
        return self in WAITING_STATES


#: The states that hold an app's queued slot (`keys.app_queued`): a newer push supersedes the
#: deployment in any of them, an operator may cancel it. Only `queued` has an RQ job; the others
#: wait for something (a lock or freeze window to end, their checks) before they become `queued`.
WAITING_STATES = frozenset({DeploymentState.QUEUED, DeploymentState.HELD, DeploymentState.WAITING_FOR_CHECKS})
FINAL_STATES = frozenset(s for s in DeploymentState if s.is_final)


class Trigger(StrEnum):
    PUSH = "push"
    MANUAL = "manual"
    ROLLBACK = "rollback"
    #: The live release again, every service recreated even when nothing changed.
    REDEPLOY = "redeploy"
    #: A pull request's preview removed (SPEC §13): closed or merged, its `ttl` ran out, an operator's
    #: request, or evicted for a newer one past `max`.
    TEARDOWN = "teardown"


@dataclass(frozen=True)
class NewDeployment:
    """What the web side asks for: one app, one commit."""

    app: str
    sha: str
    ref: str
    trigger: Trigger
    delivery_id: str = ""
    #: A forced push (or a manual/rollback request) may move the app backwards.
    forced: bool = False
    #: The ref's previous sha as the push announced it ("" when unknown): lets the worker tell a
    #: force-push from hosts that send no `forced` flag (Gitea, GitLab).
    before: str = ""
    #: The operator who asked for it (a manual deploy or a rollback); "" for a push.
    operator: str = ""
    #: The checks the commit must pass first (`CheckRequirement.label`): "" deploys at once.
    required_checks: str = ""
    #: The pull request whose preview this deploys (SPEC §13); None for the app itself.
    preview: int | None = None
    #: A preview of a fork's pull request: built with none of the app's secrets.
    fork: bool = False

    @property
    def state(self) -> DeploymentState:
        """The state it is recorded in: gated pushes wait for their checks, the others are queued."""
        return DeploymentState.WAITING_FOR_CHECKS if self.required_checks else DeploymentState.QUEUED
    #: Run through the app's freeze window (an admin's choice, with a reason): not held for it.
    #: An operator's lock still holds it. Not part of the record.
    override_freeze: bool = False

    def record_fields(self) -> tuple[str, ...]:
        """Field/value pairs of its queued record, flat, leaving out empty values and what the store
        adds (id, state, created_at): `Deployment.from_fields` reads the same record back."""
        fields: tuple[str, ...] = (
            "app", self.app, "sha", self.sha, "ref", self.ref, "trigger", str(self.trigger),
            "forced", "1" if self.forced else "0",
        )
        if self.delivery_id:
            fields += ("delivery_id", self.delivery_id)
        if self.before:
            fields += ("before", self.before)
        if self.operator:
            fields += ("operator", self.operator)
        if self.required_checks:
            fields += ("required_checks", self.required_checks, "error", waiting_text((self.required_checks,)))
        if self.preview is not None:
            fields += ("preview", str(self.preview))
        if self.fork:
            fields += ("fork", "1")
        return fields


@dataclass(frozen=True)
class Deployment:
    id: str
    app: str
    sha: str
    ref: str
    trigger: Trigger
    state: DeploymentState
    created_at: float
    delivery_id: str = ""
    forced: bool = False
    before: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    previous_sha: str = ""
    #: Why it ended as it did; while it is `held`, what holds it (a lock or a freeze window).
    error: str = ""
    #: Who asked for it; "" for a push.
    operator: str = ""
    #: The checks a gated push waited for (kept once it ran or ended).
    required_checks: str = ""
    #: Set when its checks kept a gated push from deploying (one failed, or they timed out).
    checks_failed: bool = False

    #: The commit's subject line and author, recorded by the worker once it fetched the commit.
    commit_message: str = ""
    commit_author: str = ""
    #: The pull request whose preview it deployed (SPEC §13); None for the app itself.
    preview: int | None = None
    #: A preview of a fork's pull request (built with none of the app's secrets).
    fork: bool = False

    @classmethod
    def create(cls, deployment_id: str, new: NewDeployment, now: float | None = None,
               state: DeploymentState | None = None) -> Deployment:
        """The record of `new` as created (its state: what the intake script decided, else its own)."""
        return cls(
            id=deployment_id,
            app=new.app,
            sha=new.sha,
            ref=new.ref,
            trigger=new.trigger,
            state=state or new.state,
            created_at=time.time() if now is None else now,
            delivery_id=new.delivery_id,
            forced=new.forced,
            before=new.before,
            operator=new.operator,
            error=waiting_text((new.required_checks,)) if new.required_checks else "",
            required_checks=new.required_checks,
            preview=new.preview,
            fork=new.fork,
        )

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis hash."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Deployment:
        def opt_float(key: str) -> float | None:
            return float(fields[key]) if fields.get(key) else None

        return cls(
            id=fields["id"],
            app=fields["app"],
            sha=fields["sha"],
            ref=fields.get("ref", ""),
            trigger=Trigger(fields.get("trigger", "push")),
            state=DeploymentState(fields["state"]),
            created_at=float(fields["created_at"]),
            delivery_id=fields.get("delivery_id", ""),
            forced=fields.get("forced") == "1",
            before=fields.get("before", ""),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            previous_sha=fields.get("previous_sha", ""),
            error=fields.get("error", ""),
            operator=fields.get("operator", ""),
            required_checks=fields.get("required_checks", ""),
            checks_failed=fields.get("checks_failed") == "1",
            commit_message=fields.get("commit_message", ""),
            commit_author=fields.get("commit_author", ""),
            preview=int(fields["preview"]) if fields.get("preview") else None,
            fork=fields.get("fork") == "1",
        )

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of a deployment record (docs/contract.md, Deployments)."""
        return {
            "id": self.id,
            "app": self.app,
            "sha": self.sha,
            "ref": self.ref,
            "trigger": str(self.trigger),
            "delivery_id": self.delivery_id or None,
            "state": str(self.state),
            "created_at": iso_time(self.created_at),
            "started_at": iso_time(self.started_at),
            "finished_at": iso_time(self.finished_at),
            "previous_sha": self.previous_sha or None,
            "error": self.error or None,
            "operator": self.operator or None,
            "required_checks": self.required_checks or None,
            "commit_message": self.commit_message or None,
            "commit_author": self.commit_author or None,
            "preview": self.preview,
        }

    def summary(self) -> dict[str, str]:
        """The short form a webhook answer lists."""
        return {"id": self.id, "app": self.app, "sha": self.sha, "state": str(self.state)}


def iso_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

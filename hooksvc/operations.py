"""Operator actions shared by the API and the command line: manual deploy, redeploy, rollback, overview,
and following a deployment until it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hooksvc import defaults, redact
from hooksvc.app_locks import AppLockState, read_lock
from hooksvc.ci_checks import CheckReport
from hooksvc.config import AppConfig
from hooksvc.connection import call
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.errors import BadRequest, Conflict
from hooksvc.freeze import Freeze
from hooksvc.jobqueue import workers_alive
from hooksvc.live_services import LiveServices, read_services
from hooksvc.store import DeploymentStore


def queue_manual(store: DeploymentStore, app: AppConfig, sha: str, ref: str, operator: str = "",
                 override_freeze: FreezeOverride | None = None) -> Deployment:
    """Queue a manual deployment by `operator`; with no sha, the worker deploys the head of `ref` (or the branch).

    During the app's freeze window it is held like a push, unless `override_freeze` (an admin's,
    with a reason) runs it through the window; a lock holds it either way.
    """
    if not sha and not ref:
        if not app.single_branch:
            raise BadRequest(f"app {app.name!r} deploys {app.ref_pattern}: give a 'ref' or a 'sha'")
        ref = f"refs/heads/{app.branch}"
    new = NewDeployment(app.name, sha, ref, Trigger.MANUAL, forced=True, operator=operator,
                        override_freeze=override_freeze is not None)
    dep = _submit_one(store, new)
    if override_freeze is not None:
        store.logs.append(dep.id, f"deploys through the freeze window: {override_freeze.by}: {override_freeze.reason}")
    return dep


@dataclass(frozen=True)
class FreezeOverride:
    """An admin's choice to deploy through the app's freeze window, and why."""

    by: str
    reason: str

    @classmethod
    def asked(cls, by: str, reason: str) -> FreezeOverride:
        """The override, or BadRequest when it gives no reason."""
        reason = " ".join(reason.split())
        if not reason:
            raise BadRequest("'override_freeze' needs a 'reason' (why this deploy cannot wait for the window's end)")
        return cls(by, reason[: defaults.LOCK_REASON_MAX_CHARS])


def queue_redeploy(store: DeploymentStore, app: AppConfig, operator: str = "") -> Deployment:
    """Queue the live release again, every service recreated even when nothing changed (held like any
    deployment while the app is locked or frozen); Conflict when nothing is live yet."""
    live = store.live(app.name)
    if live is None:
        raise Conflict(f"app {app.name!r} has no live release to redeploy: deploy it first")
    return _submit_one(store, NewDeployment(app.name, live.sha, "", Trigger.REDEPLOY, forced=True, operator=operator))


def queue_rollback(store: DeploymentStore, app: AppConfig, to: str, operator: str = "") -> Deployment:
    """Queue a redeploy of the previous successful release (or of `to`), asked for by `operator`."""
    if not to:
        live = store.live(app.name)
        previous = store.previous_success(app.name, live.sha if live else None)
        if previous is None:
            raise Conflict(f"app {app.name!r} has no earlier successful release to roll back to")
        to = previous.sha
    return _submit_one(store, NewDeployment(app.name, to, "", Trigger.ROLLBACK, forced=True, operator=operator))


def _submit_one(store: DeploymentStore, new: NewDeployment) -> Deployment:
    return store.intake.submit([new]).deployments[0]


@dataclass(frozen=True)
class WaitingForChecks:
    """A push waiting for its CI checks: what it needs, what it still waits for, and what is known."""

    deployment_id: str
    sha: str
    #: The app's `require_checks` (`ci/test, lint`, or `all`).
    required: str
    #: The status text: `waiting for checks: lint`.
    waiting_for: str
    checks: tuple[CheckReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment_id, "sha": self.sha, "required": self.required,
            "waiting_for": self.waiting_for,
            "checks": [{"name": c.name, "state": str(c.state), "url": c.url or None} for c in self.checks],
        }

    def describe_checks(self) -> str:
        """`ci/test success, lint pending`, as `hooksvc status` prints it."""
        return ", ".join(f"{c.name} {c.state}" for c in self.checks) or "none reported yet"


def waiting_for_checks(store: DeploymentStore, app: AppConfig, queued_id: str | None) -> WaitingForChecks | None:
    """The app's push waiting for its checks, if its queued slot holds one."""
    dep = store.find(queued_id) if queued_id else None
    if dep is None or dep.state is not DeploymentState.WAITING_FOR_CHECKS:
        return None
    checks = tuple(store.checks.read(app.name, dep.sha).values())
    return WaitingForChecks(dep.id, dep.sha, dep.required_checks, dep.error, checks)


@dataclass(frozen=True)
class AppOverview:
    """An app's live release, its newest deployment and the queued one, as the API, pages and `status` show it."""

    name: str
    repo: str
    #: The branch or ref pattern it deploys.
    ref: str
    strategy: str
    live_sha: str | None
    live_deployment: str | None
    #: The newest deployment's state (None: never deployed).
    state: str | None
    last_deployment: Deployment | None
    queued_deployment: str | None
    #: What the app's services run since its last deployment that went live (None: not recorded yet).
    services: LiveServices | None
    #: The push that waits for its CI checks (`require_checks`), if any.
    waiting: WaitingForChecks | None = None
    #: The operator's lock on the app, if any.
    lock: AppLockState | None = None
    #: The freeze window in force now, if any.
    freeze: Freeze | None = None
    #: The app's configured windows and the zone they are read in.
    windows: tuple[str, ...] = ()
    timezone: str = defaults.TIMEZONE

    def to_json(self) -> dict[str, Any]:
        """The API's document of the overview."""
        services = self.services
        return {
            "name": self.name,
            "repo": self.repo,
            "ref": self.ref,
            "strategy": self.strategy,
            "live_sha": self.live_sha,
            "live_deployment": self.live_deployment,
            "state": self.state,
            "last_deployment": self.last_deployment.to_json() if self.last_deployment else None,
            "queued_deployment": self.queued_deployment,
            "services": None if services is None else {
                "deployment_id": services.deployment_id, "recorded_at": services.recorded_at,
                "services": [{"name": s.name, "runs": s.runs} for s in services.services]},
            "waiting_for_checks": self.waiting.to_json() if self.waiting else None,
            "lock": self.lock.to_json() if self.lock else None,
            "freeze": {"windows": list(self.windows), "timezone": self.timezone,
                       "active": None if self.freeze is None else {
                           "window": self.freeze.window,
                           "until": self.freeze.until.astimezone(UTC).isoformat().replace("+00:00", "Z")}},
        }


#: How many of an app's newest deployments the overview looks through for its own newest one (the
#: others are its previews'): past that many preview deployments in a row, the app shows no state.
OVERVIEW_LOOKBACK = 25


def app_overview(store: DeploymentStore, app: AppConfig) -> AppOverview:
    """An app's live release, its newest deployment and the queued one, read from the store."""
    live = store.live(app.name)
    # The app's own newest deployment: a preview's (SPEC §13) says nothing of how production stands.
    last = next((d for d in store.recent(app=app.name, limit=OVERVIEW_LOOKBACK) if d.preview is None), None)
    queued = store.queued_id(app.name)
    return AppOverview(
        name=app.name,
        repo=app.repo,
        ref=app.ref_pattern,
        strategy=app.strategy,
        live_sha=live.sha if live else None,
        live_deployment=live.deployment_id if live else None,
        state=str(last.state) if last else None,
        last_deployment=last,
        queued_deployment=queued,
        services=read_services(store.redis, app.name),
        waiting=waiting_for_checks(store, app, queued) if app.require_checks is not None else None,
        lock=call(read_lock, store.redis, app.name),
        freeze=app.frozen_at(datetime.now(UTC)),
        windows=tuple(w.text for w in app.freeze),
        timezone=app.timezone,
    )


def wait_for_deployment(store: DeploymentStore, deployment_id: str, bound: float,
                        out: Callable[[str], None] = print) -> int:
    """Follow a deployment's log until it ends (0 when it succeeded), or give up after `bound` seconds (1).

    While it is queued and no worker is registered to run it, say so at once and every
    `NO_WORKER_WARNING_SECONDS`: a deployment nobody runs must not look like one that is slow. Log lines
    are build output on their way to a terminal: their control characters are escaped.
    """
    deadline = time.monotonic() + bound
    cursor = "0-0"
    warned_at: float | None = None
    while True:
        dep = store.get(deployment_id)
        lines, cursor = store.logs.read(deployment_id, cursor)
        for line in lines:
            out(redact.terminal_safe(line))
        if dep.state.is_final:  # its `finished:` line was written with the state: it was just printed
            out(f"deployment {dep.id}: {dep.state}" + (f": {redact.terminal_safe(dep.error)}" if dep.error else ""))
            return 0 if dep.state is DeploymentState.SUCCEEDED else 1
        now = time.monotonic()
        if now >= deadline:
            out(f"deployment {dep.id} is still {dep.state} after {bound:.0f}s (its job timeout plus "
                f"{defaults.WAIT_MARGIN_SECONDS:.0f}s): stopped waiting; `hooksvc logs {dep.id} --follow` "
                "follows it further")
            return 1
        if dep.state is DeploymentState.QUEUED and (
            warned_at is None or now - warned_at >= defaults.NO_WORKER_WARNING_SECONDS
        ) and not workers_alive(store.queue):
            out(f"warning: no worker is running to take deployment {dep.id}: start `hooksvc worker` "
                "or `hooksvc run` with this config; still waiting")
            warned_at = now
        lines, cursor = store.logs.read(deployment_id, cursor, block_ms=int(min(1.0, deadline - now) * 1000) + 1)
        for line in lines:
            out(redact.terminal_safe(line))

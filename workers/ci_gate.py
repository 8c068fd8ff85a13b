"""The CI gate: each push waiting for its checks deploys, is skipped, or waits on (`require_checks`).

A worker thread looks at every gated app's waiting deployment each tick. What it knows of the
commit's checks is what webhooks recorded (`hooksvc.check_records`) plus what it last read from the
host's check API (`workers.ci_status`): read a first time shortly after the push, then again at
doubling gaps up to a bound (the fallback for a check webhook that never arrives), and at once when
a webhook asks for it (a GitHub check suite). The decision itself is `hooksvc.ci_checks.decide`.
One worker's gate acts at a time (a lease), so the host's API is read once per commit however many
workers run; every change is a store transition, so a gate that acts twice changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from hooksvc import defaults, keys
from hooksvc.app_locks import hold_passed
from hooksvc.ci_checks import ALL, CheckReport, Verdict, VerdictKind, decide
from hooksvc.config import AppConfig, Config, HostConfig
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import HooksvcError
from hooksvc.store import DeploymentStore
from workers.ci_status import read_checks
from workers.http import HttpTransportError
from workers.locks import Lease

log = logging.getLogger("hooksvc.ci_gate")

#: Reads the host's checks of a repository's commit (`workers.ci_status.read_checks`).
ReadChecks = Callable[[HostConfig, str, str], list[CheckReport]]


@dataclass
class ReadSchedule:
    """When the host's check API is next read for one waiting deployment."""

    next_read: float
    gap: float
    #: When it was last read (0: never): "all checks" passes only on a recent read.
    read_at: float = 0.0


@dataclass(frozen=True)
class GateTimings:
    """How the gate paces itself; the named defaults, shortened by tests."""

    poll_first: float = defaults.CHECKS_POLL_FIRST_SECONDS
    poll_max: float = defaults.CHECKS_POLL_MAX_SECONDS
    grace: float = defaults.CHECKS_NONE_GRACE_SECONDS
    tick: float = defaults.CHECKS_TICK_SECONDS


def gated(config: Config) -> list[AppConfig]:
    return [app for app in config.apps.values() if app.require_checks is not None]


class ChecksGate:
    def __init__(
        self,
        config: Config,
        store: DeploymentStore,
        timings: GateTimings = GateTimings(),
        read: ReadChecks = read_checks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.timings = timings
        self.read = read
        self.clock = clock
        self.schedules: dict[str, ReadSchedule] = {}
        self.lease = Lease(store.redis, keys.CHECKS_GATE, f"{os.uname().nodename}:{os.getpid()}:{id(self)}",
                           int(defaults.CHECKS_GATE_LEASE_SECONDS * 1000))
        self._holding = False

    def waiting(self) -> list[tuple[AppConfig, Deployment]]:
        """Each gated app's deployment that waits for its checks (it holds the app's queued slot)."""
        out = []
        for app in gated(self.config):
            queued = self.store.queued_id(app.name)
            dep = self.store.find(queued) if queued else None
            if dep is not None and dep.state is DeploymentState.WAITING_FOR_CHECKS:
                out.append((app, dep))
        return out

    def tick(self) -> list[Deployment]:
        """Decide every waiting deployment once; returns those that deployed or ended."""
        waiting = self.waiting()
        changed = []
        for app, dep in waiting:
            done = self.step(app, dep)
            if done is not None:
                changed.append(done)
        alive = {dep.id for _, dep in waiting}
        for gone in set(self.schedules) - alive:
            del self.schedules[gone]
        return changed

    def step(self, app: AppConfig, dep: Deployment) -> Deployment | None:
        """Decide one waiting deployment: read the host's API when due, then act on the verdict."""
        now = self.clock()
        schedule = self.schedules.get(dep.id)
        if schedule is None:
            schedule = ReadSchedule(next_read=dep.created_at + self.timings.poll_first, gap=self.timings.poll_first)
            self.schedules[dep.id] = schedule
        due = self.store.checks.take_refresh(app.name, dep.sha) or now >= schedule.next_read
        reports = self.store.checks.read(app.name, dep.sha)
        verdict = self._decide(app, dep, reports, schedule, now)
        if self._should_read(app, verdict, reports, schedule, now, due):
            self._read(app, dep, schedule, now)
            verdict = self._decide(app, dep, self.store.checks.read(app.name, dep.sha), schedule, now)
        return self._act(app, dep, verdict)

    def run_once(self) -> list[Deployment]:
        """One pass for a burst worker, which runs no gate thread: read every waiting deployment's
        checks from the host now and act on them (release, skip, or leave waiting). Nothing when
        another worker's gate holds the lease: that one acts on them instead."""
        if not self.lease.acquire():
            log.info("checks gate: another worker's gate is acting, the pushes waiting for checks are left to it")
            return []
        try:
            now = self.clock()
            for _, dep in self.waiting():
                self.schedules[dep.id] = ReadSchedule(next_read=now, gap=self.timings.poll_first)
            return self.tick()
        finally:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()

    def _decide(self, app: AppConfig, dep: Deployment, reports: dict[str, CheckReport], schedule: ReadSchedule,
                now: float) -> Verdict:
        assert app.require_checks is not None  # noqa: S101 - only gated apps' deployments get here
        return decide(app.require_checks, reports, own_context=app.status_context,
                      waited=now - dep.checks_wait_began, age=now - dep.created_at,
                      timeout=app.checks_timeout, grace=self.timings.grace, complete=schedule.read_at > 0)

    def _should_read(self, app: AppConfig, verdict: Verdict, reports: dict[str, CheckReport],
                     schedule: ReadSchedule, now: float, due: bool) -> bool:
        """Whether to read the host's check API before acting: when a read is due, when "all checks"
        needs a fresh list, and before a timeout ends the push (its checks may have finished since
        the last read, their webhooks lost: a burst worker may come by long after). A failed check
        needs no read."""
        if verdict.kind is VerdictKind.SKIP:
            return verdict.failed is None and now - schedule.read_at > defaults.CHECKS_FRESH_READ_SECONDS
        return due or self._needs_fresh_read(app, verdict, reports, schedule, now)

    def _needs_fresh_read(self, app: AppConfig, verdict: Verdict, reports: dict[str, CheckReport],
                          schedule: ReadSchedule, now: float) -> bool:
        """"all checks" deploys on what the host lists now, not on a list a check may have joined since
        the last read (a check run created after it, whose webhook was lost, would go unseen): when
        every check known passed, the host's list is read again (at most every few seconds)."""
        if app.require_checks is None or not app.require_checks.every:
            return False
        if now - schedule.read_at <= defaults.CHECKS_FRESH_READ_SECONDS:
            return False
        known = any(name != app.status_context for name in reports)
        return verdict.kind is VerdictKind.DEPLOY or (known and verdict.waiting_for == (ALL,))

    def _read(self, app: AppConfig, dep: Deployment, schedule: ReadSchedule, now: float) -> None:
        schedule.gap = min(schedule.gap * 2, self.timings.poll_max)
        schedule.next_read = now + schedule.gap
        host = self.config.hosts.get(app.host)
        if host is None:
            return
        try:
            reports = self.read(host, app.repo, dep.sha)
        except (HooksvcError, HttpTransportError) as exc:
            log.warning("checks of %s %s: %s (next read in %.0fs)", app.name, dep.sha[:12], exc, schedule.gap)
            return
        self.store.checks.write(app.name, dep.sha, reports)
        schedule.read_at = now

    def _act(self, app: AppConfig, dep: Deployment, verdict: Verdict) -> Deployment | None:
        if verdict.kind is VerdictKind.DEPLOY:
            held = hold_passed(self.store, app, dep.id)
            if held is not None:
                log.info("deployment %s of %s: %s, but held: %s", dep.id, dep.app, verdict.reason, held.error)
                return held
            done = self.store.release(dep.id, DeploymentState.WAITING_FOR_CHECKS, verdict.reason)
            if done is not None:
                log.info("deployment %s of %s: %s: queued", dep.id, dep.app, verdict.reason)
            return done
        if verdict.kind is VerdictKind.SKIP:
            done = self.store.finish(dep.id, DeploymentState.SKIPPED, verdict.reason, checks_failed=True)
            if done is not None:
                log.info("deployment %s of %s %s", dep.id, dep.app, verdict.reason)
            return done
        if verdict.reason != dep.error:
            # Its commit status names what it still waits for, as checks pass.
            self.store.update_waiting(dep.id, DeploymentState.WAITING_FOR_CHECKS, verdict.reason)
        return None

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until `stop` is set, while this worker holds the gate's lease; Redis outages are waited out."""
        try:
            while not stop.wait(self.timings.tick):
                try:
                    self._holding = self.lease.extend() if self._holding else self.lease.acquire()
                    if self._holding:
                        self.tick()
                except (HooksvcError, redis.RedisError) as exc:
                    log.warning("checks gate: %s", exc)
        finally:
            if self._holding:
                with contextlib.suppress(redis.RedisError):
                    self.lease.release()


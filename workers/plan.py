"""The plan job: what a deploy of a sha would change, found without changing anything.

It fetches and checks the release out under the app's deploy lock (the mirror and the checkouts are
the deploy job's too; the lock is held for those two steps only and not waited for long: while a
deployment runs, the plan says the app is busy), then asks the app's strategy for its `plan` (the compose
strategies read the release's compose model and config hashes and the engine's containers and
images, and hand them to the rollout planner, the one a rollout uses). It never builds: a service
whose image this release would build, and whose release image is not there yet, says so.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import get_current_job

from hooksvc import defaults, keys
from hooksvc.config import AppConfig, Config, load_config
from hooksvc.connection import connect, redis_url
from hooksvc.errors import BadRequest, Conflict, GitError, HooksvcError, NotFound
from hooksvc.release_steps import POST_DEPLOY, PRE_DEPLOY
from workers import jobs
from workers.git import GitMirror
from workers.locks import AppLock
from workers.release_plan import ServiceChange
from workers.strategies import Release, strategy_for

log = logging.getLogger("hooksvc.plan")


def plan_job(app: str, sha: str) -> dict[str, Any]:
    """RQ job: the plan of deploying `sha` (the branch head when "") of `app`, as JSON; an error the
    operator can act on is answered as `{"error", "status"}` (the web side raises it again)."""
    config = jobs.bound_config() or load_config()
    job = get_current_job()
    connection = job.connection if job is not None else connect(redis_url(config))
    try:
        return plan_release(config, connection, app, sha).to_json()
    except HooksvcError as exc:
        return {"error": str(exc), "status": exc.status_code}


@dataclass(frozen=True)
class Plan:
    app: str
    sha: str
    live_sha: str | None
    strategy: str
    services: tuple[ServiceChange, ...]
    orphans: tuple[str, ...]
    steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app, "sha": self.sha, "live_sha": self.live_sha, "strategy": self.strategy,
            "services": [{"service": s.service, "action": s.action, "reason": s.reason,
                          "image": {"old": s.image_old, "new": s.image_new}} for s in self.services],
            "orphans": list(self.orphans),
            "steps": list(self.steps),
        }


def plan_release(config: Config, connection: redis.Redis, name: str, sha: str) -> Plan:
    """The plan of deploying `sha` of app `name` (see the module docstring)."""
    app = config.app(name)
    if app is None:
        raise NotFound(f"no app {name!r}")
    if not sha and not app.single_branch:
        raise BadRequest(f"app {name!r} deploys {app.ref_pattern}: give a 'sha'")
    checkout, full = _check_out(config, connection, app, sha)
    plan = strategy_for(app).plan(Release(app, checkout, full, "", _quiet, config.worker.state_dir))
    steps = tuple(f"{phase}: {s.service}: {s.command_line}" for phase, group in
                  ((PRE_DEPLOY, app.pre_deploy), (POST_DEPLOY, app.post_deploy)) for s in group)
    live = connection.hget(keys.app_live(app.name), "sha")
    return Plan(app.name, full, live.decode() if live else None, app.strategy, plan.services, plan.orphans, steps)


def _check_out(config: Config, connection: redis.Redis, app: AppConfig, sha: str) -> tuple[Path, str]:
    """Fetch, resolve and check out the release under the app's deploy lock, waited for briefly."""
    lock = AppLock(connection, keys.app_lock(app.name), f"plan-{os.getpid()}")
    deadline = time.monotonic() + defaults.PLAN_LOCK_WAIT_SECONDS
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise Conflict(f"a deployment of {app.name} is running: ask for the plan again once it ended")
        time.sleep(defaults.LOCK_POLL_SECONDS)
    with lock:
        mirror = GitMirror(app, config.worker.state_dir, _quiet, config.secrets(),
                           other_origins={a.name: a.clone_url for a in config.apps.values()})
        mirror.fetch()
        try:
            full = mirror.resolve(sha or app.ref_pattern)
        except GitError as exc:
            raise NotFound(f"{exc}") from None
        if mirror.is_on_ref(full) is None:
            raise Conflict(f"commit {full} is not on {app.ref_pattern}: it would not be deployed")
        return mirror.checkout_release(full), full


def _quiet(line: str) -> None:
    log.debug("%s", line)

"""The safety net for lost webhooks: apps with `poll_interval` have their branch head checked now and then.

Git hosts do not retry failed deliveries, so a push whose webhook was lost would never deploy. The
poller fetches the app's mirror and queues the branch head when it is neither live nor queued.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from hooksvc import keys
from hooksvc.config import AppConfig, Config
from hooksvc.deployments import Deployment, NewDeployment, Trigger
from hooksvc.errors import HooksvcError
from hooksvc.routing import required_checks
from hooksvc.store import DeploymentStore
from workers import host_auth
from workers.git import GitMirror
from workers.locks import AppLock

log = logging.getLogger("hooksvc.poller")

#: How often the polling thread wakes to see whether an app is due.
TICK_SECONDS = 1.0


def pollable(app: AppConfig) -> bool:
    """Only an exact branch has one head to deploy; a glob or a tag pattern names many refs."""
    return app.poll_interval is not None and app.single_branch


class BranchPoller:
    def __init__(self, config: Config, store: DeploymentStore) -> None:
        self.config = config
        self.store = store

    def poll(self, app: AppConfig) -> Deployment | None:
        """Queue the head of `app`'s branch if it is new; None when there is nothing to do."""
        # The mirror is the deploy job's too: poll only while no deployment of the app holds the lock
        # (one that does fetches anyway).
        lock = AppLock(self.store.redis, keys.app_lock(app.name), f"poll-{os.getpid()}")
        if not lock.try_acquire():
            return None
        try:
            credentialed = host_auth.with_clone_token(app, self.config.hosts.get(app.host))
            mirror = GitMirror(credentialed, self.config.worker.state_dir, lambda line: log.debug("%s", line),
                               self.config.secrets())
            mirror.fetch()
            head = mirror.resolve(app.ref_pattern)
        finally:
            lock.release()
        live = self.store.live(app.name)
        if live is not None and live.sha == head:
            return None
        queued = self.store.queued_id(app.name)
        if queued is not None and self.store.get(queued).sha == head:
            return None
        new = NewDeployment(app.name, head, app.ref_pattern, Trigger.PUSH, delivery_id="poll",
                            before=live.sha if live else "", required_checks=required_checks(app))
        # One deployment per polled head: a head that failed to deploy is not retried on every poll.
        result = self.store.intake.submit([new], [f"poll:{app.name}:{head}"])
        if result.duplicate_of is not None:
            return None
        log.info("poll: %s head %s is not live: queued deployment %s", app.name, head[:12], result.deployments[0].id)
        return result.deployments[0]

    def run_forever(self, stop: threading.Event) -> None:
        due = {name: 0.0 for name, app in self.config.apps.items() if pollable(app)}
        while due and not stop.wait(TICK_SECONDS):
            now = time.monotonic()
            for name, when in due.items():
                if when > now:
                    continue
                app = self.config.apps[name]
                due[name] = now + (app.poll_interval or 0.0)
                try:
                    self.poll(app)
                except (HooksvcError, redis.RedisError, OSError) as exc:
                    log.warning("poll of %s failed: %s", name, exc)


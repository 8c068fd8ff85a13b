"""The RQ entry point: a job takes a deployment id and runs it from queued to a final state.

Jobs run in forks of a `hooksvc worker`, under the config that worker started with (`use_config`,
called by the runtime): the worker's outbox sender and its jobs always agree on the apps.
"""

from __future__ import annotations

import logging
import os
import time
import traceback

import redis
from rq import get_current_job

from hooksvc import keys
from hooksvc.config import AppConfig, Config, load_config
from hooksvc.connection import connect
from hooksvc.deployments import Deployment, DeploymentState, Trigger
from hooksvc.errors import DeployError, GitError
from hooksvc.logs import LogFn
from hooksvc.redact import redact
from hooksvc.store import DeploymentStore, open_store
from workers.git import GitMirror, touches
from workers.locks import AppLock

log = logging.getLogger("hooksvc.worker")

#: The config of the worker process this job runs in; set once, before the worker starts.
_process_config: Config | None = None


def use_config(config: Config) -> None:
    """Run every job of this process (and of its forks) under `config`."""
    global _process_config
    _process_config = config


def run_deployment(deployment_id: str) -> str:
    """RQ job: run one deployment from queued to a final state. Returns the final state."""
    # A worker hooksvc did not start (a bare `rq worker`) has no config bound: read $HOOKSVC_CONFIG.
    config = _process_config if _process_config is not None else load_config()
    job = get_current_job()
    connection = job.connection if job is not None else connect(config.redis.url)
    return execute(config, open_store(config, connection), connection, deployment_id)


def execute(config: Config, store: DeploymentStore, connection: redis.Redis, deployment_id: str) -> str:
    """Wait for the app's lock, then deploy; every path ends the deployment in a final state."""
    dep = store.find(deployment_id)
    if dep is None or dep.state is not DeploymentState.QUEUED:
        return "not queued" if dep is None else str(dep.state)
    app = config.app(dep.app)
    if app is None:
        store.finish(deployment_id, DeploymentState.ERROR, f"app {dep.app!r} is no longer configured")
        return str(DeploymentState.ERROR)
    lock = AppLock(connection, keys.app_lock(app.name), deployment_id)

    def still_queued() -> bool:
        current = store.find(deployment_id)
        return current is not None and current.state is DeploymentState.QUEUED

    if not lock.acquire(still_queued):
        return "superseded or cancelled while waiting"
    with lock:
        # The lock was free, so any deployment of this app still marked running lost its worker.
        store.reap_abandoned()
        live = store.live(app.name)
        running = store.start(deployment_id, previous_sha=live.sha if live else "")
        if running is None:
            return "superseded or cancelled"
        secrets = config.secrets()

        def log_line(line: str) -> None:
            store.logs.append(deployment_id, redact(line, secrets))

        state, error = Deployer(config, store, app, running, live.sha if live else "", log_line).run()
        # The error quotes command output (a failed build, a container's log), which may print a
        # secret; it becomes the record's `error`, the `finished:` log line, the commit status and
        # the notifications, so it is redacted like every log line.
        error = redact(error, secrets)
        final = store.get(deployment_id)
        store.finish(deployment_id, state, error, live_sha=final.sha if state is DeploymentState.SUCCEEDED else None)
        return str(state)


class Deployer:
    """The steps of one deployment, from fetch to live; `run` returns the final state and error."""

    def __init__(
        self,
        config: Config,
        store: DeploymentStore,
        app: AppConfig,
        deployment: Deployment,
        live_sha: str,
        log_line: LogFn,
    ) -> None:
        self.config = config
        self.store = store
        self.app = app
        self.dep = deployment
        self.live_sha = live_sha
        self.log = log_line
        self.started = time.monotonic()

    def step(self, name: str) -> None:
        self.log(f"==> {name} (+{time.monotonic() - self.started:.1f}s)")

    def run(self) -> tuple[DeploymentState, str]:
        try:
            return self._run()
        except DeployError as exc:
            self.log(f"failed: {exc}")
            return DeploymentState.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - every fault must end the deployment, never leave it running
            for line in traceback.format_exc().splitlines():
                self.log(line)
            return DeploymentState.ERROR, f"internal error: {type(exc).__name__}: {exc}"

    def _run(self) -> tuple[DeploymentState, str]:
        from workers.rollout import roll_out

        app, dep, secrets = self.app, self.dep, self.config.secrets()
        self.step(f"deployment {dep.id}: {dep.trigger} of {app.name} ({dep.sha or dep.ref}), worker pid {os.getpid()}")
        mirror = GitMirror(app, self.config.worker.state_dir, self.log, secrets)
        self.step(f"fetching {redact(app.clone_url, secrets)}")
        mirror.fetch()
        sha = mirror.resolve(dep.sha or dep.ref)
        if sha != dep.sha:
            self.log(f"{dep.sha or dep.ref} resolves to {sha}")
            self.store.set_sha(dep.id, sha)
        on_ref = mirror.is_on_ref(sha)
        if on_ref is None:
            raise GitError(f"commit {sha} is not on {app.ref_pattern}: refusing to deploy it")
        self.log(f"{sha} is on {on_ref}")
        skip = self._skip_reason(mirror, sha)
        if skip:
            self.log(f"skipped: {skip}")
            return DeploymentState.SKIPPED, skip
        self.step(f"checking out {sha}")
        release = mirror.checkout_release(sha)
        self.step(f"rolling out ({app.strategy})")
        roll_out(app, release, log=self.log, state_dir=self.config.worker.state_dir)
        removed = mirror.prune_releases(self.config.worker.keep_releases, protect={sha, self.live_sha} - {""})
        if removed:
            self.log(f"pruned old releases: {', '.join(s[:12] for s in removed)}")
        self.step(f"{sha[:12]} is live")
        return DeploymentState.SUCCEEDED, ""

    def _skip_reason(self, mirror: GitMirror, sha: str) -> str:
        """Why this deployment need not run: stale push, or no change under the app's `paths`."""
        live, dep = self.live_sha, self.dep
        if not live or dep.trigger is not Trigger.PUSH or not mirror.has_commit(live):
            return ""
        # Gitea and GitLab send no `forced` flag: a push whose old sha is not an ancestor of the
        # new one rewrote history, which is what a force-push is.
        forced = dep.forced or bool(
            dep.before and mirror.has_commit(dep.before) and not mirror.is_ancestor(dep.before, sha)
        )
        if sha == live:
            return f"{sha[:12]} is already live"
        if not forced and mirror.is_ancestor(sha, live):
            return f"stale: {sha[:12]} is an ancestor of the live {live[:12]} (a delayed or out-of-order push)"
        if self.app.paths and not touches(mirror.changed_paths(live, sha), self.app.paths):
            return f"no change under {', '.join(self.app.paths)} since {live[:12]}"
        return ""

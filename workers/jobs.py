"""The RQ entry point: a job takes a deployment id and runs it from queued to a final state.

Jobs run in forks of a `hooksvc worker`, under the config that worker started with (`use_config`,
called by the runtime): the worker's outbox sender and its jobs always agree on the apps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
from rq import get_current_job

from hooksvc import audit, defaults, keys
from hooksvc.config import AppConfig, Config, load_config
from hooksvc.connection import connect, redis_url
from hooksvc.deployments import Deployment, DeploymentState, Trigger
from hooksvc.disk_usage import record_disk_usage
from hooksvc.errors import (
    DeployError,
    DeploymentCancelled,
    EngineUnavailable,
    GitError,
    PostDeployFailed,
    RedisUnavailable,
)
from hooksvc.live_services import ServiceRecord, record_services
from hooksvc.logs import LogFn
from hooksvc.redact import redact
from hooksvc.store import DeploymentStore, open_store
from workers import cancellation, host_auth
from workers.cancellation import Cancellation, CancelWatch
from workers.compose import ComposeProject, detect_compose
from workers.compose_confinement import check_compose_model, check_compose_sources
from workers.git import CredentialsRefused, GitMirror, touches
from workers.images import prune_and_measure
from workers.locks import AppLock

log = logging.getLogger("hooksvc.worker")

T = TypeVar("T")
#: The error of a deployment that a cold stop (a second stop signal to its worker) cut short.
COLD_STOP_ERROR = ("worker stopped (cold) during the deployment: a second stop signal killed its job; "
                   "the app's next rollout removes any container it had started")
#: Log lines a job holds back while Redis is unreachable; older ones are dropped (and counted) past this.
PENDING_LOG_LINES = 10_000

#: The config of the worker process this job runs in; set once, before the worker starts.
_process_config: Config | None = None


def use_config(config: Config) -> None:
    """Run every job of this process (and of its forks) under `config`."""
    global _process_config
    _process_config = config


def bound_config() -> Config | None:
    """The config `use_config` bound, None in a worker hooksvc did not start."""
    return _process_config


def run_deployment(deployment_id: str) -> str:
    """RQ job: run one deployment from queued to a final state. Returns the final state."""
    # A worker hooksvc did not start (a bare `rq worker`) has no config bound: read $HOOKSVC_CONFIG.
    config = _process_config if _process_config is not None else load_config()
    job = get_current_job()
    connection = job.connection if job is not None else connect(redis_url(config))
    return execute(config, open_store(config, connection), connection, deployment_id)


def execute(config: Config, store: DeploymentStore, connection: redis.Redis, deployment_id: str) -> str:
    """Wait for the app's lock, then deploy; every path ends the deployment in a final state.

    A fault outside the deployment's own steps (Redis gone while waiting for the lock or starting,
    a bug) ends it `error` with the reason, once Redis answers again, and is raised for RQ to record.
    """
    try:
        return _execute(config, store, connection, deployment_id)
    except Exception as exc:
        reason = redact(f"internal error: {type(exc).__name__}: {exc}", config.secrets())
        log.exception("deployment %s: %s", deployment_id, reason)
        try:
            wait_out_redis(lambda: store.finish(deployment_id, DeploymentState.ERROR, reason),
                           f"deployment {deployment_id}: recording the error")
        except RedisUnavailable:
            log.error("deployment %s: Redis stayed unreachable; the janitor or the reaper will end it", deployment_id)
        raise


def end_cut_deployment(store: DeploymentStore, deployment_id: str, reason: str = COLD_STOP_ERROR) -> Deployment | None:
    """End `error` a running deployment whose job was killed on purpose, and free its app's lock.

    The worker calls this once its work horse is dead, so nothing renews the lock any more: the
    app's next deployment starts at once instead of after the lock's TTL, and its rollout's
    left-over check removes the containers the cut one started. A deployment still queued (its
    job was waiting for the lock) is the janitor's, as when a worker dies.
    """
    dep = store.find(deployment_id)
    if dep is None or dep.state is not DeploymentState.RUNNING:
        return None
    ended = store.finish(deployment_id, DeploymentState.ERROR, reason)
    AppLock(store.redis, keys.app_lock(dep.app, dep.preview), deployment_id).lease.release()
    return ended


def wait_out_redis(fn: Callable[[], T], what: str, patience: float = defaults.REDIS_OUTAGE_WAIT_SECONDS) -> T:
    """`fn()`, tried again with backoff while Redis is unreachable, for up to `patience` seconds.

    A Redis restart (its data kept in the append-only file) takes seconds: a deployment that is
    rolling out carries on and writes its record once Redis is back, instead of failing for it.
    """
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return fn()
        except RedisUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s: %s; trying again in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class JobLog:
    """A deployment's log as its job writes it: redacted, and held back, in order, while Redis is away.

    Steps log from more than one thread (a rollout runs compose calls side by side): one lock keeps
    the lines whole and in order.
    """

    def __init__(self, store: DeploymentStore, deployment_id: str, secrets: list[str]) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self.secrets = secrets
        self.pending: deque[str] = deque()
        self.dropped = 0
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            if len(self.pending) >= PENDING_LOG_LINES:
                self.pending.popleft()
                self.dropped += 1
            self.pending.append(redact(line, self.secrets))
            with contextlib.suppress(RedisUnavailable):  # kept for the next line, or for flush() at the end
                self._flush()

    def flush(self) -> None:
        """Write whatever is held back, waiting out a Redis outage (see `wait_out_redis`)."""

        def locked_flush() -> None:
            with self._lock:
                self._flush()

        wait_out_redis(locked_flush, f"deployment {self.deployment_id}: writing its log")

    def _flush(self) -> None:
        if self.dropped:
            self.store.logs.append(self.deployment_id,
                                   f"({self.dropped} log lines lost while Redis was unreachable)")
            self.dropped = 0
        while self.pending:
            self.store.logs.append(self.deployment_id, self.pending[0])
            self.pending.popleft()


def _execute(config: Config, store: DeploymentStore, connection: redis.Redis, deployment_id: str) -> str:
    dep = store.find(deployment_id)
    if dep is None or dep.state is not DeploymentState.QUEUED:
        return "not queued" if dep is None else str(dep.state)
    app = config.app(dep.app)
    if app is None:
        store.finish(deployment_id, DeploymentState.ERROR, f"app {dep.app!r} is no longer configured")
        return str(DeploymentState.ERROR)
    lock = AppLock(connection, keys.app_lock(app.name, dep.preview), deployment_id)

    def still_queued() -> bool:
        current = store.find(deployment_id)
        return current is not None and current.state is DeploymentState.QUEUED

    if not lock.acquire(still_queued):
        return "superseded or cancelled while waiting"
    with lock:
        # The lock was free, so any deployment of this app still marked running lost its worker.
        store.reap_abandoned()
        live_sha = _live_sha(store, app, dep.preview)
        running = store.start(deployment_id, previous_sha=live_sha)
        if running is None:
            return "superseded or cancelled"
        secrets = config.secrets()
        job_log = JobLog(store, deployment_id, secrets)
        deployer = _deployer_for(running)(config, store, app, running, live_sha, job_log)
        cancel = Cancellation(job_log, live_sha)
        with cancel.installed(), CancelWatch(store, deployment_id, cancel):
            state, error = deployer.run()
        # The error quotes command output (a failed build, a container's log), which may print a
        # secret; it becomes the record's `error`, the `finished:` log line, the commit status and
        # the notifications, so it is redacted like every log line.
        error = redact(error, secrets)
        # From here on the outcome is known: a Redis outage delays its record, it does not change it.
        job_log.flush()
        final = wait_out_redis(lambda: store.get(deployment_id), f"deployment {deployment_id}: reading it back")
        wait_out_redis(
            lambda: store.finish(deployment_id, state, error,
                                 live_sha=final.sha if dep.preview is None and (
                                     state is DeploymentState.SUCCEEDED or deployer.went_live) else None),
            f"deployment {deployment_id}: recording {state}",
        )
        if cancel.requested_by:
            wait_out_redis(lambda: _audit_cancel(store, running, cancel, error),
                           f"deployment {deployment_id}: auditing its cancel")
        # Still under the app's lock, so the next deployment never prunes beside it.
        deployer.after_live()
        job_log.flush()
        return str(state)


def _audit_cancel(store: DeploymentStore, dep: Deployment, cancel: Cancellation, error: str) -> None:
    """The audit trail's second entry of a cancel of a running deployment: how it ended (the request was
    the first, with result `requested`)."""
    reason = error if cancel.acted else f"came too late: {cancel.too_late}"
    audit.record(store.redis, audit.AuditEntry(
        action=audit.CANCEL, result=audit.OK if cancel.acted else audit.FAILED, operator=cancel.requested_by,
        app=dep.app, sha=dep.sha or None, deployment=dep.id, address="worker", reason=reason))


def _live_sha(store: DeploymentStore, app: AppConfig, preview: int | None) -> str:
    """What the deployment replaces: the app's live release, or the preview's (SPEC §13)."""
    if preview is None:
        live = store.live(app.name)
        return live.sha if live else ""
    from hooksvc.preview_records import PreviewRecords

    record = PreviewRecords(store.redis).get(app.name, preview)
    return record.sha if record else ""


def _deployer_for(dep: Deployment) -> type[Deployer]:
    """The steps a deployment takes: the app's own, or a pull request preview's (`workers.previews`)."""
    if dep.preview is None:
        return Deployer
    from workers.previews import PreviewDeployer

    return PreviewDeployer


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
        #: True when the release went live although the deployment failed (a `post_deploy` step).
        self.went_live = False
        #: Set by a successful run: the upkeep `after_live` does once the outcome is recorded.
        self._after_live: Callable[[], None] | None = None
        #: Where the release checkouts go (None: the app's own folder); a preview has its own.
        self.releases_dir: Path | None = None
        #: Work the rollout handed over (`Release.defer`), whatever the outcome: run first by `after_live`.
        self._deferred: list[Callable[[], None]] = []

    def step(self, name: str) -> None:
        self.log(f"==> {name} (+{time.monotonic() - self.started:.1f}s)")

    def run(self) -> tuple[DeploymentState, str]:
        try:
            return self._run()
        except DeploymentCancelled as exc:
            self.log(f"cancelled: {exc}")
            return DeploymentState.CANCELLED, str(exc)
        except EngineUnavailable as exc:
            self.log(f"error: {exc}")
            return DeploymentState.ERROR, str(exc)
        except DeployError as exc:
            self.went_live = isinstance(exc, PostDeployFailed)
            self.log(f"failed: {exc}")
            return DeploymentState.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - every fault must end the deployment, never leave it running
            for line in traceback.format_exc().splitlines():
                self.log(line)
            return DeploymentState.ERROR, f"internal error: {type(exc).__name__}: {exc}"

    def _fetched_mirror(self, secrets: list[str]) -> GitMirror:
        """The app's mirror, fetched. A GitHub App host's HTTPS origin is read with an installation
        token; one the origin refuses (revoked, lapsed in flight) is renewed and the fetch tried once more."""
        host = self.config.hosts.get(self.app.host)
        origins = {a.name: a.clone_url for a in self.config.apps.values()}

        def fetched() -> GitMirror:
            app = host_auth.with_clone_token(self.app, host)
            mirror = GitMirror(app, self.config.worker.state_dir, self.log, secrets, other_origins=origins,
                               releases_dir=self.releases_dir)
            mirror.fetch()
            return mirror

        if host is None or host.app is None or self.app.clone_token is not None:
            return fetched()
        try:
            return fetched()
        except CredentialsRefused:
            self.log("the origin refused the installation token: renewing it and fetching again")
            host_auth.refused(host, self.app.repo)
            return fetched()

    def _run(self) -> tuple[DeploymentState, str]:
        from workers.strategies import Release, strategy_for

        app, dep, secrets = self.app, self.dep, self.config.secrets()
        stop = cancellation.active()
        self.step(f"deployment {dep.id}: {dep.trigger} of {app.name} ({dep.sha or dep.ref}), worker pid {os.getpid()}")
        stop.at("fetching")
        self.step(f"fetching {redact(app.clone_url, secrets)}")
        mirror = self._fetched_mirror(secrets)
        sha = mirror.resolve(dep.sha or dep.ref)
        if sha != dep.sha:
            self.log(f"{dep.sha or dep.ref} resolves to {sha}")
            wait_out_redis(lambda: self.store.set_sha(dep.id, sha), f"deployment {dep.id}: recording its sha")
        on_ref = mirror.is_on_ref(sha)
        if on_ref is None:
            raise GitError(f"commit {sha} is not on {app.ref_pattern}: refusing to deploy it")
        self.log(f"{sha} is on {on_ref}")
        message, author = mirror.commit_summary(sha)
        wait_out_redis(lambda: self.store.set_commit(dep.id, message, author),
                       f"deployment {dep.id}: recording its commit")
        skip = self._skip_reason(mirror, sha)
        if skip:
            self.log(f"skipped: {skip}")
            return DeploymentState.SKIPPED, skip
        stop.at("checking out")
        self.step(f"checking out {sha}")
        checkout = mirror.checkout_release(sha)
        stop.at("checking the release")
        self.step("checking what compose reads and the services' rollout settings")
        model = self._check_release(checkout)
        release = Release(app, checkout, sha, dep.id, self.log, self.config.worker.state_dir,
                          shared=self.store.redis, resolved=model, force_recreate=dep.trigger is Trigger.REDEPLOY,
                          defer=self._deferred.append)
        strategy = strategy_for(app)
        self.step(f"rolling out ({strategy.name})")
        deploy = strategy.roll_back if dep.trigger is Trigger.ROLLBACK else strategy.roll_out
        services = deploy(release)
        self.step(f"{sha[:12]} is live")
        self._after_live = lambda: self._tidy_up(mirror, sha, services)
        return DeploymentState.SUCCEEDED, ""

    def after_live(self) -> None:
        """The work that does not decide the outcome, run once the deployment is recorded: the
        containers the rollout retired removed (whatever the outcome), then, when it went live, what
        its services run, old releases and images pruned, disk usage. A fault here is logged, never
        turned into the deployment's state (already final)."""
        for work in [*self._deferred, *([self._after_live] if self._after_live is not None else [])]:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - the outcome is recorded already; this is upkeep
                log.exception("deployment %s: after going live: %s", self.dep.id, exc)
                self.log(f"after going live: {type(exc).__name__}: {exc}")

    def _tidy_up(self, mirror: GitMirror, sha: str, services: Sequence[ServiceRecord]) -> None:
        app, dep = self.app, self.dep
        wait_out_redis(lambda: record_services(self.store.redis, app.name, dep.id, services, time.time()),
                       f"deployment {dep.id}: recording what its services run")
        removed = mirror.prune_releases(self.config.worker.keep_releases, protect={sha, self.live_sha} - {""})
        if removed:
            self.log(f"pruned old releases: {', '.join(s[:12] for s in removed)}")
        usage = prune_and_measure(app.project or app.name, app.docker_host, mirror.releases_dir, self.log)
        if usage is not None:
            wait_out_redis(lambda: record_disk_usage(self.store.redis, app.name, usage.checkouts, usage.images,
                                                     time.time()), f"deployment {dep.id}: recording disk usage")

    def _check_release(self, release: Path) -> dict[str, Any]:
        """Refuse the release before anything builds when compose would read outside its checkout, or a
        service's rollout settings (labels, stop grace) are out of range. Returns the resolved compose model."""
        from workers.service_labels import check_service_settings

        app = self.app
        check_compose_sources(release, app.compose_files)
        compose = ComposeProject(command=detect_compose(log=self.log), project=app.project or app.name,
                                 directory=release, files=tuple(app.compose_files), docker_host=app.docker_host)
        model = compose.config(self.log)
        check_compose_model(model, release, confine_binds=app.docker_host is not None)
        check_service_settings(model["services"])
        return model

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
        if forced and dep.ref.startswith("refs/heads/") and (head := mirror.head_of(dep.ref)) != sha:
            # `forced` lets a push go backwards, so it must be the branch as it is now: a delivery
            # captured and replayed after the dedupe window would roll the app back otherwise.
            now = f"{head[:12]} is" if head else "the branch is gone"
            return f"stale forced push: {sha[:12]} is no longer the head of {dep.ref} ({now})"
        if not forced and mirror.is_ancestor(sha, live):
            return f"stale: {sha[:12]} is an ancestor of the live {live[:12]} (a delayed or out-of-order push)"
        if self.app.paths and not touches(mirror.changed_paths(live, sha), self.app.paths):
            return f"no change under {', '.join(self.app.paths)} since {live[:12]}"
        return ""

"""`hooksvc worker`: an RQ deploy worker and the background threads of the deploy side."""

from __future__ import annotations

import logging
import threading
from types import FrameType
from urllib.parse import urlsplit

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.utils import now

# Imported here, in the worker, on purpose: every job runs in a fork of this process, which then
# inherits the job's modules instead of importing them again (~0.1 s per deployment, measured).
import workers.plan  # noqa: F401
import workers.strategies  # noqa: F401
from hooksvc import defaults
from hooksvc.app_locks import settle_all
from hooksvc.config import Config
from hooksvc.connection import connect, redis_url
from hooksvc.deployments import DeploymentState
from hooksvc.errors import HooksvcError
from hooksvc.jobqueue import deployment_of_job
from hooksvc.plans import plan_queue
from hooksvc.preview_records import sweep_expired
from hooksvc.recovery import recover_stranded, release_ungated
from hooksvc.retention import trim
from hooksvc.runtime.base import Runtime, leave
from hooksvc.store import DeploymentStore
from workers import jobs
from workers.checks import check_services as check_services  # `hooksvc check-config`: the deploy side's probes
from workers.ci_gate import ChecksGate, gated
from workers.compose import detect_compose
from workers.outbox_sender import OutboxSender
from workers.poller import BranchPoller, pollable
from workers.process import scrub_environ

log = logging.getLogger("hooksvc.runtime")


class WorkerRuntime(Runtime):
    """A worker's background threads: the reaper, the janitor (stranded queued deployments, retention), the
    intake dispatcher, the outbox sender and, when any app sets `poll_interval`, the branch poller, and
    when any sets `require_checks`, the checks gate; when any sets `freeze` windows, the thaw (held
    deployments whose window ended); when any has previews, the preview ttl sweep."""

    def start(self) -> None:
        super().start()
        self.start_thread("hooksvc-janitor", self.recover_forever)
        self.start_thread("hooksvc-intake", self.store.intake.dispatch_forever)
        # Its pauses end when the runtime stops, so a stopping worker does not wait one out.
        sender = OutboxSender(self.config, self.store.redis, sleep=self.pause)
        self.start_thread("hooksvc-outbox", sender.run_forever)
        if any(pollable(app) for app in self.config.apps.values()):
            self.start_thread("hooksvc-poller", BranchPoller(self.config, self.store).run_forever)
        if gated(self.config):
            self.start_thread("hooksvc-checks-gate", ChecksGate(self.config, self.store).run_forever)
        if any(app.freeze for app in self.config.apps.values()):
            self.start_thread("hooksvc-thaw", self.thaw_forever)
        if any(app.previews is not None for app in self.config.apps.values()):
            self.start_thread("hooksvc-preview-ttl", self.expire_previews_forever)

    def expire_previews_forever(self, stop: threading.Event) -> None:
        """Every `PREVIEW_SWEEP_SECONDS`: queue the teardown of each preview not pushed to for its app's
        `ttl`. Every worker runs it; a teardown already queued is not queued again."""
        while not stop.wait(defaults.PREVIEW_SWEEP_SECONDS):
            try:
                sweep_expired(self.store, self.config)
            except HooksvcError as exc:
                log.warning("preview ttl: %s", exc)

    def thaw_forever(self, stop: threading.Event) -> None:
        """Every `HOLD_CHECK_SECONDS`: queue each app's held deployment once its freeze window ended (an
        unlock queues its own at once). Every worker runs it; the transaction lets one of them win."""
        while not stop.wait(defaults.HOLD_CHECK_SECONDS):
            try:
                for dep in settle_all(self.store, self.config.apps):
                    log.info("deployment %s of %s: %s", dep.id, dep.app,
                             "released, queued" if dep.state is DeploymentState.QUEUED else f"held: {dep.error}")
            except HooksvcError as exc:
                log.warning("thaw: %s", exc)


    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when the runtime stops meanwhile."""
        self.stopping.wait(seconds)

    def recover_forever(self, stop: threading.Event) -> None:
        """Every `REAPER_INTERVAL_SECONDS`: re-queue or end queued deployments whose job vanished or died,
        queue pushes waiting for checks their app no longer requires, and trim each app's finished
        deployments to `keep_deployments`."""
        keep = {app: self.config.worker.keep_deployments for app in self.config.apps}
        while not stop.wait(defaults.REAPER_INTERVAL_SECONDS):
            try:
                recover_stranded(self.store, self.config.apps)
                release_ungated(self.store, self.config.apps)
                trim(self.store, keep)
            except HooksvcError as exc:
                log.warning("janitor: %s", exc)


#: A second stop signal this soon after the first is the first one again (see `request_force_stop`).
DUPLICATE_SIGNAL_SECONDS = 1.0


class DeployWorker(Worker):
    """RQ's forking worker, with hooksvc's heartbeat and its two stops.

    The first SIGTERM or SIGINT is a warm stop: an idle worker exits at once; a busy one logs the
    deployment it waits for, lets it finish or roll back, then exits. A second one is a cold stop:
    the work horse's process group (the job and its git, compose and docker commands: RQ starts the
    horse in a group of its own) is killed, the deployment ends `error` with the reason
    (`jobs.COLD_STOP_ERROR`) and the worker exits; the app's next rollout removes the containers
    the cut one had started. The worker writes its heartbeat every `WORKER_HEARTBEAT_SECONDS`,
    idle or busy, so `hooksvc status` drops a killed one soon (`jobqueue.workers_alive`).
    """

    def __init__(self, store: DeploymentStore) -> None:
        # Plans first: an operator waits for one, and it takes seconds.
        super().__init__([plan_queue(store.redis), store.queue], connection=store.redis,
                         job_monitoring_interval=defaults.WORKER_HEARTBEAT_SECONDS)
        self.store = store
        #: The deployment the work horse runs, "" while idle.
        self.deployment_id = ""
        #: A deployment ended after the warm stop was asked for: its commit status is still to be sent.
        self.finished_while_stopping = False

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker's heartbeat: it waits this long for a job before it writes the next."""
        return defaults.WORKER_HEARTBEAT_SECONDS

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.deployment_id = deployment_of_job(job.id)
        try:
            super().execute_job(job, queue)
        finally:
            self.deployment_id = ""
        self.finished_while_stopping = self._stop_requested

    def unsubscribe(self) -> None:
        """RQ's joins its pubsub thread, which can sit a minute in one wait for a message (measured:
        idle stops of 1-120 s): tell Redis, and leave the thread, a daemon, to the process's end."""
        if self.pubsub_thread is not None:
            self.pubsub.unsubscribe()
            self.pubsub_thread.stop(timeout=0)

    def handle_warm_shutdown_request(self) -> None:
        if self.horse_pid and self.deployment_id:
            log.info("warm stop: waiting for deployment %s to finish (a second stop signal cuts it short)",
                     self.deployment_id)
        else:
            log.info("warm stop")

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """Cold stop: RQ's, plus the deployment's end. A second signal within a second of the first
        is the same stop sent twice (a terminal's Ctrl-C to the process group beside a supervisor's
        SIGTERM), as RQ also judges: it is ignored."""
        del signum, frame
        asked = self._shutdown_requested_date
        if asked is not None and (now() - asked).total_seconds() < DUPLICATE_SIGNAL_SECONDS:
            log.info("stop signal ignored: the same stop, sent twice")
            return
        if self.horse_pid:
            deployment_id = self.deployment_id
            log.warning("cold stop: killing the work horse (pid %s) of deployment %s", self.horse_pid,
                        deployment_id or "-")
            self.kill_horse()
            self.wait_for_horse()
            if deployment_id:
                try:
                    if jobs.end_cut_deployment(self.store, deployment_id) is not None:
                        log.warning("deployment %s ended error: %s", deployment_id, jobs.COLD_STOP_ERROR)
                except HooksvcError as exc:  # Redis away: the reaper ends it once the lock expires
                    log.warning("deployment %s: %s", deployment_id, exc)
        else:
            log.info("cold stop")
        raise SystemExit(0)


def work(config: Config, *, burst: bool = False) -> int:
    """Run deployments. With `burst`, dispatch the waiting intake, run what is queued, deliver the
    outbox once, and exit; without, run the worker's background threads and serve forever."""
    # The config holds every secret now: a build context of /proc/<this pid> must find none in the
    # environment. Git and compose get their credentials from the config, never from here.
    # Redis's password too: whoever writes to the queue runs code in every worker.
    url = redis_url(config)
    scrubbed = scrub_environ([*config.secrets(), urlsplit(url).password or ""])
    if scrubbed:
        log.info("removed %d secret variable(s) from the worker's environment: %s", len(scrubbed), ", ".join(scrubbed))
    connection = connect(url)
    runtime = WorkerRuntime(config, connection)
    jobs.use_config(config)  # the forks inherit it: jobs run under this process's config
    try:
        detect_compose()  # the forks inherit the detection too
    except HooksvcError as exc:
        log.warning("%s (deployments will fail until compose is installed)", exc)

    worker = DeployWorker(runtime.store)
    if burst:
        # A burst worker runs no dispatcher thread: turn what webhooks left waiting into jobs first.
        runtime.store.intake.recover()  # entries a dispatcher that died left half done
        sweep_expired(runtime.store, config)  # previews past their ttl are torn down in this burst
        dispatched = runtime.store.intake.dispatch()
        settle_all(runtime.store, config.apps)  # held deployments whose window ended run in this burst
        log.info("burst: dispatched %d waiting intake entr%s", dispatched, "y" if dispatched == 1 else "ies")
        worker.work(burst=True, logging_level="INFO")
        OutboxSender(config, connection).run_once()
        return 0
    runtime.start()
    try:
        worker.work(logging_level="INFO")
    finally:
        runtime.stop()
    if worker.finished_while_stopping:
        # The sender thread stopped with the worker: send the finished deployment's status now.
        try:
            OutboxSender(config, connection).run_once()
        except (HooksvcError, redis.RedisError) as exc:
            log.warning("outbox sender: %s (another worker sends the status)", exc)
    leave(0)

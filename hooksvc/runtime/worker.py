"""`hooksvc worker`: an RQ deploy worker and the background threads of the deploy side."""

from __future__ import annotations

import logging
import threading

from rq import Worker

# Imported here, in the worker, on purpose: every job runs in a fork of this process, which then
# inherits the job's modules instead of importing them again (~0.1 s per deployment, measured).
import workers.strategies  # noqa: F401
from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.connection import connect, redis_url
from hooksvc.errors import HooksvcError
from hooksvc.recovery import recover_stranded
from hooksvc.retention import trim
from hooksvc.runtime.base import Runtime
from workers import jobs
from workers.checks import check_services as check_services  # `hooksvc check-config`: the deploy side's probes
from workers.compose import detect_compose
from workers.outbox_sender import OutboxSender
from workers.poller import BranchPoller, pollable

log = logging.getLogger("hooksvc.runtime")


class WorkerRuntime(Runtime):
    """A worker's background threads: the reaper, the janitor (stranded queued deployments, retention), the
    intake dispatcher, the outbox sender and, when any app sets `poll_interval`, the branch poller."""

    def start(self) -> None:
        super().start()
        self.start_thread("hooksvc-janitor", self.recover_forever)
        self.start_thread("hooksvc-intake", self.store.intake.dispatch_forever)
        self.start_thread("hooksvc-outbox", OutboxSender(self.config, self.store.redis).run_forever)
        if any(pollable(app) for app in self.config.apps.values()):
            self.start_thread("hooksvc-poller", BranchPoller(self.config, self.store).run_forever)


    def recover_forever(self, stop: threading.Event) -> None:
        """Every `REAPER_INTERVAL_SECONDS`: re-queue or end queued deployments whose job vanished or died,
        and trim each app's finished deployments to `keep_deployments`."""
        keep = {app: self.config.worker.keep_deployments for app in self.config.apps}
        while not stop.wait(defaults.REAPER_INTERVAL_SECONDS):
            try:
                recover_stranded(self.store, self.config.apps)
                trim(self.store, keep)
            except HooksvcError as exc:
                log.warning("janitor: %s", exc)


def work(config: Config, *, burst: bool = False) -> int:
    """Run deployments. With `burst`, dispatch the waiting intake, run what is queued, deliver the
    outbox once, and exit; without, run the worker's background threads and serve forever."""
    connection = connect(redis_url(config))
    runtime = WorkerRuntime(config, connection)
    jobs.use_config(config)  # the forks inherit it: jobs run under this process's config
    try:
        detect_compose()  # the forks inherit the detection too
    except HooksvcError as exc:
        log.warning("%s (deployments will fail until compose is installed)", exc)

    worker = Worker([runtime.store.queue], connection=connection)
    if burst:
        # A burst worker runs no dispatcher thread: turn what webhooks left waiting into jobs first.
        runtime.store.intake.recover()  # entries a dispatcher that died left half done
        dispatched = runtime.store.intake.dispatch()
        log.info("burst: dispatched %d waiting intake entr%s", dispatched, "y" if dispatched == 1 else "ies")
        worker.work(burst=True, logging_level="INFO")
        OutboxSender(config, connection).run_once()
        return 0
    runtime.start()
    try:
        worker.work(logging_level="INFO")
    finally:
        runtime.stop()
    return 0

"""The background work every hooksvc process runs, under the config the process started with."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import redis

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.errors import HooksvcError
from hooksvc.store import DeploymentStore, open_store

log = logging.getLogger("hooksvc.runtime")

#: How long `stop()` waits for each background thread to notice.
JOIN_SECONDS = 5.0


class Runtime:
    """The background threads of one process (here: the reaper, which every process runs);
    `stop()` ends them. `hooksvc.runtime.worker.WorkerRuntime` adds a worker's threads."""

    def __init__(self, config: Config, connection: redis.Redis | None = None) -> None:
        self.config = config
        self.store: DeploymentStore = open_store(config, connection)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.start_thread("hooksvc-reaper", self.reap_forever)

    def reap_forever(self, stop: threading.Event) -> None:
        """End `error` the deployments whose worker died, every `REAPER_INTERVAL_SECONDS`."""
        while not stop.wait(defaults.REAPER_INTERVAL_SECONDS):
            try:
                for dep in self.store.reap_abandoned():
                    log.warning("deployment %s of %s ended error: its worker died", dep.id, dep.app)
            except HooksvcError as exc:
                log.warning("reaper: %s", exc)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=JOIN_SECONDS)

    def start_thread(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        """Run `loop(stop_event)` in a daemon thread until `stop()`."""
        thread = threading.Thread(target=loop, args=(self.stopping,), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


def leave(status: int) -> NoReturn:
    """End a long-running process whose work is done, without the interpreter's teardown.

    A worker has imported Docker's SDK, GitPython, RQ and their dependencies: tearing them down
    took 0.1-1.1 s per stop on a busy machine (measured), with nothing left to do. The log
    handlers and the standard streams are flushed first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

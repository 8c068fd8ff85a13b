"""Cancelling a running deployment: the operator's request, noticed by its job and acted on at safe points.

The request is a field of the deployment's record (`cancel_requested_by`, written by
`DeploymentStore.cancel`). The job watches it from a thread (`CancelWatch`) and hands it to the job's
`Cancellation`, which kills the command running then if that command may be killed (a git fetch, a
build, a `pre_deploy` step: each with every process it started), and makes the next safe point
(`check`, `at`) raise `DeploymentCancelled`. That error takes the path any failure before the switch
takes: the new containers are removed, the image tags put back, and the live release keeps serving.
Once the rollout starts replacing the live release (`past_return`) a request comes too late: the log
says so and the deployment ends as it would have.

One job runs per process (RQ's work horse forks one per job), so the job's `Cancellation` is the
process's (`active()`, set by `Cancellation.installed`): the subprocess runner and the health gate
consult it without every signature between the job and them carrying it. Outside a deployment's job
(the poller, the plan job, tests calling a step directly) it is `NOT_CANCELLABLE`, which never acts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hooksvc import defaults
from hooksvc.errors import DeploymentCancelled, RedisUnavailable

if TYPE_CHECKING:  # types only: `workers.process` imports this module, and the post-receive hook loads no Redis
    from hooksvc.logs import LogFn
    from hooksvc.store import DeploymentStore

log = logging.getLogger("hooksvc.worker")


class Cancellation:
    """One deployment's cancel request, the stage it is in, and whether it is past the point of no return."""

    def __init__(self, log_line: LogFn, live_sha: str) -> None:
        self.log = log_line
        self.live_sha = live_sha
        #: The operator who asked ("" until someone does).
        self.requested_by = ""
        #: What the deployment is doing, for the error: "cancelled by alice while <stage>".
        self.stage = "starting"
        #: Why a request can no longer be honoured ("" before the point of no return).
        self.too_late = ""
        #: DeploymentCancelled was raised: the deployment ends `cancelled`.
        self.acted = False
        self._late_logged = False
        self._lock = threading.Lock()
        self._running: set[int] = set()

    # -- the job's side ------------------------------------------------------------------------------

    def at(self, stage: str) -> None:
        """Name the stage the deployment enters, and stop here when a request came (a safe point)."""
        self.stage = stage
        self.check()

    def check(self) -> None:
        """Raise DeploymentCancelled when a request came before the point of no return."""
        with self._lock:
            if not self.requested_by or self.too_late:
                return
            self.acted = True
        raise DeploymentCancelled(self.error())

    def past_return(self, why: str) -> None:
        """The last safe point: stop here when a request came; from now on one comes too late, because `why`."""
        with self._lock:
            if self.too_late:
                return
            if not self.requested_by:
                self.too_late = why
                return
        self.check()

    def ended(self) -> None:
        """The deployment's steps are over: a request it has not acted on comes too late."""
        with self._lock:
            if not self.too_late:
                self.too_late = "the deployment had finished its steps"
        self._log_late()

    def error(self) -> str:
        """The cancelled deployment's error: who, while doing what, and what still serves."""
        live = f"{self.live_sha[:12]} is still live" if self.live_sha else "nothing was live before it"
        return f"cancelled by {self.requested_by} while {self.stage}; {live}"

    @contextmanager
    def killable(self, pid: int) -> Iterator[None]:
        """While the block runs, a request kills process `pid` and every process it started."""
        with self._lock:
            self._running.add(pid)
            now = bool(self.requested_by) and not self.too_late  # it came while the command was starting
        if now:
            kill_tree(pid)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(pid)

    # -- the watcher's side --------------------------------------------------------------------------

    def request(self, operator: str) -> None:
        """`operator` asked to cancel: kill the killable commands now, unless it comes too late."""
        with self._lock:
            if self.requested_by:
                return
            self.requested_by = operator
            late = bool(self.too_late)
            running = [] if late else sorted(self._running)
        if late:
            self._log_late()
            return
        self.log(f"cancelling for {operator} while {self.stage}")
        for pid in running:
            kill_tree(pid)

    def _log_late(self) -> None:
        with self._lock:
            if not self.too_late or not self.requested_by or self.acted or self._late_logged:
                return
            self._late_logged = True
        self.log(f"cancel requested by {self.requested_by} came too late: {self.too_late}")

    # -- the process's deployment --------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[Cancellation]:
        """Make this the process's cancellation (`active()`) while the block runs."""
        global _active
        previous, _active = _active, self
        try:
            yield self
        finally:
            _active = previous


class _NotCancellable(Cancellation):
    """What `active()` is outside a deployment's job: nothing ever asks it to cancel."""

    def request(self, operator: str) -> None:
        raise RuntimeError("nothing outside a deployment's job can be cancelled")


NOT_CANCELLABLE: Cancellation = _NotCancellable(lambda line: None, "")
_active: Cancellation = NOT_CANCELLABLE


def active() -> Cancellation:
    """The cancellation of the deployment this process runs (`NOT_CANCELLABLE` when it runs none)."""
    return _active


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process it started (compose's CLI plugin, git's helpers): all of them, not
    only the one we started, or the killed client's children would go on building."""
    for target in [pid, *descendants(pid)]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            continue


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        # Field 4 is the parent's pid; the command name before it is in parentheses and may hold spaces.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


class CancelWatch:
    """A thread that looks for a cancel request of one running deployment and hands it to its `Cancellation`.

    It polls the deployment's record (`defaults.CANCEL_POLL_SECONDS`), so a request is noticed within a
    second, and keeps polling through a Redis outage: the request is in Redis's append-only file and
    is found once Redis is back.
    """

    def __init__(self, store: DeploymentStore, deployment_id: str, cancellation: Cancellation,
                 poll_seconds: float = defaults.CANCEL_POLL_SECONDS) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self.cancellation = cancellation
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"cancel-watch-{deployment_id}", daemon=True)

    def __enter__(self) -> CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cancellation.ended()
        try:
            self.look()  # a request that came after the last poll is answered too: it came too late
        except Exception:  # the deployment's outcome is known: a failed look must not change it
            log.exception("deployment %s: looking for a cancel request", self.deployment_id)

    def look(self) -> bool:
        """Hand a recorded request to the cancellation; whether there was one."""
        try:
            by = self.store.cancel_requester(self.deployment_id)
        except RedisUnavailable as exc:
            log.warning("deployment %s: cannot look for a cancel request: %s", self.deployment_id, exc)
            return False
        if by:
            self.cancellation.request(by)
        return bool(by)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self.look():
                    return
            except Exception:  # a watcher that died would leave the deployment uncancellable: log, go on
                log.exception("deployment %s: looking for a cancel request", self.deployment_id)

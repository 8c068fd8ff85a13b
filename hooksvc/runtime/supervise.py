"""`hooksvc run`: web and workers on one machine, with a private redis-server when none is configured.

Long-running children live here (workers/process.py runs commands that finish); a child that dies
is restarted after a short pause.

Stopping is ordered, and only the supervisor orders it: each child runs in a process group of its
own and the private redis-server in a session of its own, so a terminal's Ctrl-C (SIGINT to the
foreground process group) reaches the supervisor alone, as a service manager's SIGTERM to the main
process does. One signal (SIGINT, SIGTERM or SIGHUP) is a warm stop: the web side first, then the
workers, each finishing (or rolling back) the deployment it runs while the supervisor says which one
it waits for; a second signal is a cold stop: the workers kill their deployments' jobs, which end
`error`. The private redis-server stops last, once every child has exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

import redis

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.connection import RUN_REDIS_RECORD, connect, redis_url
from hooksvc.errors import HooksvcError
from hooksvc.jobqueue import workers_alive
from hooksvc.runtime.base import leave
from hooksvc.store import DeploymentStore

log = logging.getLogger("hooksvc.run")

#: A child that dies is restarted after this pause, so a crash loop does not spin the CPU.
RESTART_PAUSE_SECONDS = 2.0
#: How long the private redis-server may take to accept connections.
REDIS_START_SECONDS = 10.0
#: The web side gets this long to answer the requests in flight (gunicorn's graceful timeout, plus
#: a margin) before it is killed.
WEB_STOP_SECONDS = defaults.WEB_STOP_GRACE_SECONDS + 5.0
#: After a cold stop a worker kills its job and exits at once; one still running after this is killed.
COLD_STOP_SECONDS = 10.0
#: The private redis-server writes its append-only file and exits well within this.
REDIS_STOP_SECONDS = 10.0
#: A worker ignores a second stop signal this soon after the first (see `DeployWorker.request_force_stop`).
SIGNAL_SPACING_SECONDS = 1.1
#: How often the supervisor looks at its children while it runs and while it stops them.
WATCH_SECONDS = 0.2
STOP_POLL_SECONDS = 0.05
#: The signals that stop `hooksvc run`: a terminal's Ctrl-C, a service manager's stop, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Child:
    name: str
    argv: list[str]
    #: A deploy worker: stopped after the web side, and waited for while it finishes a deployment.
    deploys: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started: float = field(default=0.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, config: Config, workers: int, bind: str | None) -> None:
        self.config = config
        self.env = dict(os.environ)
        self.env[defaults.CONFIG_ENV] = str(Path(config.path).resolve())
        #: Stop requests so far: signals, or `request_stop()`; the second one makes the stop cold.
        self.stop_requests = 0
        base = [sys.executable, "-m", "hooksvc.cli", "--config", str(Path(config.path).resolve())]
        serve = [*base, "serve"] + (["--bind", bind] if bind else [])
        self.children = [Child("web", serve)]
        self.children += [Child(f"worker-{i + 1}", [*base, "worker"], deploys=True) for i in range(workers)]
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_record: Path | None = None
        #: Where the children write (None: this process's stdout and stderr).
        self.output: IO[bytes] | None = None
        #: Called in a thread of its own once every child was started.
        self.on_started: Callable[[], None] | None = None
        #: Tells the person who stops hooksvc what the stop waits for (the quickstart: the terminal).
        self.say: Callable[[str], None] = lambda line: log.info("%s", line)

    @property
    def stopping(self) -> bool:
        return self.stop_requests > 0

    def request_stop(self) -> None:
        """What a stop signal does: the first asks for a warm stop, the next for a cold one."""
        self.stop_requests += 1

    def start_private_redis(self) -> str:
        """A redis-server only this hooksvc uses: unix socket in state_dir, data persisted there.

        It runs in a session of its own, so a terminal's Ctrl-C does not stop it before the
        workers have written their deployments' outcomes: `shutdown` stops it last.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise HooksvcError("no Redis configured and redis-server is not installed (apt-get install redis-server)")
        data = self.config.worker.state_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        sock = data / "redis.sock"
        self.redis = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
             "--dir", str(data), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        url = f"unix://{sock}?db=0"
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(url).ping()
                log.info("started a private redis-server at %s", sock)
                # Every other command given this config (deploy, status, logs) finds it here.
                record = self.config.worker.state_dir / RUN_REDIS_RECORD
                record.write_text(url + "\n")
                self.redis_record = record
                return url
            except redis.ConnectionError:
                time.sleep(0.1)
        self._stop_redis()
        raise HooksvcError(f"the private redis-server did not start within {REDIS_START_SECONDS:.0f}s")

    def _spawn(self, child: Child) -> None:
        # A process group of its own: only the supervisor signals it, in the order `shutdown` keeps.
        child.proc = subprocess.Popen(child.argv, env=self.env, stdout=self.output, stderr=self.output,
                                      process_group=0)
        child.started = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.request_stop()
        log.info("received signal %s: %s stop", signal.Signals(signum).name,
                 "warm" if self.stop_requests == 1 else "cold")

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            if self.config.redis.implicit:
                self.env[defaults.REDIS_URL_ENV] = self.start_private_redis()
            for child in self.children:
                if not self.stopping:
                    self._spawn(child)
            if self.on_started is not None:
                threading.Thread(target=self.on_started, name="hooksvc-started", daemon=True).start()
            self._watch()
        finally:
            self.shutdown()
        return 0

    def _watch(self) -> None:
        """Restart a child that died, until a stop is asked for."""
        while not self.stopping:
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    log.warning("%s exited with %s; restarting", child.name, child.proc.returncode)
                    self._pause(RESTART_PAUSE_SECONDS)
                    if not self.stopping:
                        self._spawn(child)
            self._pause(WATCH_SECONDS)

    def _pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when a stop is asked for meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(STOP_POLL_SECONDS, seconds))

    @property
    def cold(self) -> bool:
        """A second stop request came: stop at once."""
        return self.stop_requests >= 2

    def shutdown(self) -> None:
        """Stop in order: the web side (and any other child that runs no deployment), then the
        workers, then the private redis-server."""
        front = [c for c in self.children if not c.deploys]
        self._signal(front, signal.SIGTERM)
        self._wait(front, WEB_STOP_SECONDS)
        log.info("stopped %s", ", ".join(c.name for c in front))
        self._stop_workers([c for c in self.children if c.deploys])
        log.info("stopped the workers")
        if self.redis_record is not None:
            self.redis_record.unlink(missing_ok=True)
        self._stop_redis()

    def _stop_workers(self, workers: list[Child]) -> None:
        """Warm: each worker finishes its deployment, however long that takes, and the supervisor says
        which ones it waits for. A further stop request makes it cold (see `DeployWorker`)."""
        if not any(w.running for w in workers):
            return
        warm_sent = time.monotonic()
        self._signal(workers, signal.SIGTERM)
        if not self.cold:
            for line in self._waiting_lines(workers):
                self.say(line)
        while any(w.running for w in workers) and not self.cold:
            time.sleep(STOP_POLL_SECONDS)
        if not any(w.running for w in workers):
            return
        self.say("hooksvc run: stopping at once: a deployment still running ends `error`")
        # A worker takes a second signal within a second of the first for the first, sent twice.
        time.sleep(max(0.0, warm_sent + SIGNAL_SPACING_SECONDS - time.monotonic()))
        self._signal(workers, signal.SIGTERM)
        self._wait(workers, COLD_STOP_SECONDS)

    def _waiting_lines(self, workers: list[Child]) -> list[str]:
        """"waiting for deployment N of APP" for each worker that runs one, from the store's records."""
        pids = {w.proc.pid for w in workers if w.proc is not None and w.running}
        try:
            store = DeploymentStore(connect(redis_url(self.config)))
            running = [w.deployment_id for w in workers_alive(store.queue) if w.pid in pids and w.deployment_id]
            lines = []
            for deployment_id in sorted(running, key=int):
                dep = store.find(deployment_id)
                app = f" of {dep.app}" if dep is not None else ""
                lines.append(f"hooksvc run: waiting for deployment {deployment_id}{app} to finish "
                             "(Ctrl-C again to stop at once)")
            return lines
        except (HooksvcError, redis.RedisError) as exc:
            return [f"hooksvc run: waiting for the workers to finish their deployments "
                    f"(Ctrl-C again to stop at once; cannot say which: {exc})"]

    def _wait(self, children: list[Child], seconds: float) -> None:
        """Until `children` exited; kill what still runs after `seconds`, or at once on a cold stop."""
        deadline = time.monotonic() + seconds
        while any(c.running for c in children):
            late = time.monotonic() >= deadline
            if late or (self.cold and not any(c.deploys for c in children)):
                for child in children:
                    if not child.running:
                        continue
                    if late:
                        log.warning("%s did not stop within %.0fs: killing it", child.name, seconds)
                    else:
                        log.info("stopping at once: killing %s", child.name)
                    _kill_tree(child)
                break
            time.sleep(STOP_POLL_SECONDS)
        for child in children:
            if child.proc is not None:
                child.proc.wait()

    @staticmethod
    def _signal(children: Iterable[Child], signum: int) -> None:
        for child in children:
            if child.proc is not None and child.running:
                child.proc.send_signal(signum)

    def _stop_redis(self) -> None:
        if self.redis is None or self.redis.poll() is not None:
            return
        self.redis.terminate()
        try:
            self.redis.wait(timeout=REDIS_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the private redis-server did not stop within %.0fs: killing it", REDIS_STOP_SECONDS)
            self.redis.kill()
            self.redis.wait()
        log.info("stopped the private redis-server")


def run(config: Config, workers: int, bind: str | None) -> NoReturn:
    """`hooksvc run`: supervise until stopped, then leave at once (see `leave`)."""
    leave(Supervisor(config, workers, bind).run())


def _kill_tree(child: Child) -> None:
    """SIGKILL a child's process group and the groups its own children made (a worker's work horse)."""
    if child.proc is None:
        return
    groups = {child.proc.pid}
    for pid in _children_of(child.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


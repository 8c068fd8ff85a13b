"""`hooksvc run`: web and workers on one machine, with a private redis-server when none is configured.

Long-running children live here (workers/process.py runs commands that finish); a child that dies
is restarted after a short pause, and SIGTERM/SIGINT stop them all.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.connection import RUN_REDIS_RECORD
from hooksvc.errors import HooksvcError

log = logging.getLogger("hooksvc.run")

#: A child that dies is restarted after this pause, so a crash loop does not spin the CPU.
RESTART_PAUSE_SECONDS = 2.0
#: How long the private redis-server may take to accept connections.
REDIS_START_SECONDS = 10.0
#: Children get this long to stop after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 20.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = field(default=0.0)


class Supervisor:
    def __init__(self, config: Config, workers: int, bind: str | None) -> None:
        self.config = config
        self.env = dict(os.environ)
        self.env[defaults.CONFIG_ENV] = str(Path(config.path).resolve())
        self.stopping = False
        base = [sys.executable, "-m", "hooksvc.cli", "--config", str(Path(config.path).resolve())]
        serve = [*base, "serve"] + (["--bind", bind] if bind else [])
        self.children = [Child("web", serve)]
        self.children += [Child(f"worker-{i + 1}", [*base, "worker"]) for i in range(workers)]
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_record: Path | None = None
        #: Where the children write (None: this process's stdout and stderr).
        self.output: IO[bytes] | None = None
        #: Called in a thread of its own once every child was started.
        self.on_started: Callable[[], None] | None = None

    def start_private_redis(self) -> str:
        """A redis-server only this hooksvc uses: unix socket in state_dir, data persisted there."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise HooksvcError("no Redis configured and redis-server is not installed (apt-get install redis-server)")
        data = self.config.worker.state_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        sock = data / "redis.sock"
        self.redis = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
             "--dir", str(data), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        import redis

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
        raise HooksvcError(f"the private redis-server did not start within {REDIS_START_SECONDS:.0f}s")

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, stdout=self.output, stderr=self.output)
        child.started = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("received signal %s: stopping", signum)
        self.stopping = True

    def run(self) -> int:
        if self.config.redis.implicit:
            self.env[defaults.REDIS_URL_ENV] = self.start_private_redis()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for child in self.children:
            self._spawn(child)
        if self.on_started is not None:
            threading.Thread(target=self.on_started, name="hooksvc-started", daemon=True).start()
        try:
            while not self.stopping:
                for child in self.children:
                    if child.proc is not None and child.proc.poll() is not None:
                        log.warning("%s exited with %s; restarting", child.name, child.proc.returncode)
                        time.sleep(RESTART_PAUSE_SECONDS)
                        if not self.stopping:
                            self._spawn(child)
                time.sleep(0.2)
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        procs = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.redis_record is not None:
            self.redis_record.unlink(missing_ok=True)
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(timeout=STOP_GRACE_SECONDS)

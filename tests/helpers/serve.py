"""`hooksvc serve` started as operators start it: a real process (gunicorn's arbiter and its workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.docker import get_text, wait_for

#: A cold start imports Flask and forks the workers: a few seconds on a busy machine.
START_SECONDS = 30
#: gunicorn's graceful timeout is 30 s; a worker still answering a stream gets that long.
STOP_SECONDS = 40


@dataclass(frozen=True)
class ServeProcess:
    """A running `hooksvc serve`: its arbiter's pid, its port and its combined log."""

    pid: int
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> list[int]:
        """The web worker processes (the arbiter's children)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def worker_cpu_seconds(self) -> float:
        """CPU time (user + system) the web workers have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.worker_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
        return total / ticks


@contextmanager
def serve_process(config: Path, port: int, env: dict[str, str], *args: str) -> Iterator[ServeProcess]:
    """Start `hooksvc --config CONFIG serve --bind 127.0.0.1:PORT ARGS` with `env` on top of a clean
    environment; yield once /healthz answers; stop it and check its log holds no traceback."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKSVC_", "REDIS_"))}
    environ.update(env)
    log = config.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(config), "serve", "--bind", f"127.0.0.1:{port}",
             *args],
            env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        if not wait_for(lambda: get_text(f"http://127.0.0.1:{port}/healthz")[0] == 200, START_SECONDS):
            pytest.fail(f"hooksvc serve did not answer /healthz:\n{log.read_text(errors='replace')[-3000:]}")
        yield ServeProcess(proc.pid, port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]

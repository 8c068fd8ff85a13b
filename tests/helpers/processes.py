"""hooksvc processes started by tests (`serve`, `worker`, `run`), each in a session of its own."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable


def stop_process_groups(procs: Iterable[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each process's group (a worker's work horses, gunicorn's workers), wait up to `grace`
    seconds for each, then SIGKILL the group of any still running."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

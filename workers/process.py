"""The one place that runs subprocesses: an argv list, never a shell, output streamed line by line."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hooksvc.logs import LogFn

#: Lines of output kept for error messages.
TAIL_LINES = 40


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    #: The last lines of combined stdout and stderr.
    tail: tuple[str, ...]
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    log: LogFn | None = None,
    timeout: float | None = None,
    capture: bool = False,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run `argv`, sending each output line to `log` as it comes; never raises on a non-zero exit.

    `env` entries are added to the current environment. `capture` keeps the whole output (for
    commands whose output is parsed); otherwise only the tail is kept. A command still running after
    `timeout` seconds is killed and reported with return code -9.
    """
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    captured: list[str] = []
    killed = threading.Event()

    def kill_after_timeout() -> None:
        if timeout is not None and proc.poll() is None:
            killed.set()
            proc.kill()

    timer = threading.Timer(timeout, kill_after_timeout) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None  # noqa: S101 - set by stdout=PIPE above
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            if capture:
                captured.append(line)
            if log is not None:
                log(line)
        returncode = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if killed.is_set():
        returncode = -9
        if log is not None:
            log(f"killed after {timeout:.0f}s: {argv[0]}")
    return ProcessResult(
        argv=tuple(argv),
        returncode=returncode,
        tail=tuple(tail),
        output="\n".join(captured),
        seconds=time.monotonic() - started,
    )

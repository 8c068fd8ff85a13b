"""`hooksvc check-config`: are Redis, Docker, compose and git reachable with this configuration?"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

from hooksvc.config import Config
from hooksvc.connection import connect, redis_url
from hooksvc.errors import HooksvcError
from hooksvc.redact import redact
from workers.compose import detect_compose

#: Seconds each reachability probe may take.
PROBE_TIMEOUT_SECONDS = 5


def check_services(config: Config) -> Iterator[tuple[str, str | None]]:
    """Yield (what, problem or None) for each service the configuration needs."""
    url = config.redis.url
    try:
        url = redis_url(config)
        connect(url).ping()
        yield f"redis {redact(url, [])}", None
    except Exception as exc:  # noqa: BLE001 - any failure is reported, none is fatal to the check
        yield f"redis {redact(url, [])}", str(exc)
    yield "git", None if shutil.which("git") else "git is not on PATH"
    for docker_host in sorted({a.docker_host or "" for a in config.apps.values()}) or [""]:
        yield f"docker {docker_host or '(local)'}", _docker_problem(docker_host or None)
    try:
        yield "compose", None if detect_compose() else "neither `docker compose` nor `docker-compose` found"
    except (HooksvcError, OSError, subprocess.SubprocessError) as exc:
        yield "compose", str(exc)


def _docker_problem(docker_host: str | None) -> str | None:
    from workers.docker_engine import client_for

    try:
        client = client_for(docker_host, timeout=PROBE_TIMEOUT_SECONDS)
        client.ping()
        return None
    except Exception as exc:  # noqa: BLE001 - report, do not crash the check
        return f"Docker engine not reachable: {exc}"

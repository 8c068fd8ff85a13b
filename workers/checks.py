"""`hooksvc check-config`: are Redis, Docker, compose and git reachable with this configuration, and
does GitHub hand each GitHub App host an installation token for its apps' repositories?"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

from hooksvc.config import Config
from hooksvc.connection import connect, redis_url
from hooksvc.errors import HooksvcError
from hooksvc.redact import redact
from hooksvc.strategies import strategy_info
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
    swarm_hosts = {a.docker_host or "" for a in config.apps.values() if strategy_info(a.strategy).needs_swarm_manager}
    for docker_host in sorted({a.docker_host or "" for a in config.apps.values()}) or [""]:
        yield f"docker {docker_host or '(local)'}", _docker_problem(docker_host or None, docker_host in swarm_hosts)
    try:
        yield "compose", None if detect_compose() else "neither `docker compose` nor `docker-compose` found"
    except (HooksvcError, OSError, subprocess.SubprocessError) as exc:
        yield "compose", str(exc)
    yield from _github_app_problems(config)


def _github_app_problems(config: Config) -> Iterator[tuple[str, str | None]]:
    """One installation token per repository of each GitHub App host's apps: it proves the App id,
    the key, the installation and the clock at once (and is kept by nobody: the process ends)."""
    from workers.host_auth import HostAuthError, HostCredentials

    credentials = HostCredentials()
    for host in config.hosts.values():
        if host.app is None:
            continue
        for repo in sorted({a.repo for a in config.apps.values() if a.host == host.name}):
            what = f"GitHub App {host.app.app_id} on {repo}"
            try:
                credentials.token(host, repo)
            except HostAuthError as exc:
                yield what, str(exc)
            else:
                yield what, None


def _docker_problem(docker_host: str | None, swarm: bool) -> str | None:
    """Whether the engine answers; for apps with strategy swarm also whether it is a Swarm manager."""
    from workers.docker_engine import client_for

    try:
        client = client_for(docker_host, timeout=PROBE_TIMEOUT_SECONDS)
        client.ping()
        state = (client.info().get("Swarm") or {}) if swarm else {}
    except Exception as exc:  # noqa: BLE001 - report, do not crash the check
        return f"Docker engine not reachable: {exc}"
    if swarm and not state.get("ControlAvailable"):
        return (f"not a Swarm manager (swarm state {state.get('LocalNodeState') or 'unknown'}), and an app with "
                "strategy swarm deploys a stack there: run `docker swarm init` on it (or join it to the swarm as "
                "a manager), or point docker_host at a manager")
    return None

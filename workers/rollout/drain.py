"""Retiring containers: drain (their own drain command, then until no longer healthy, then a pause), stop, remove.

The drain command comes from the container's own labels: the release it runs knows how to take
itself out of rotation, the new one may not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hooksvc import defaults
from hooksvc.logs import LogFn
from workers.docker_engine import DockerEngine
from workers.rollout.context import Rollout
from workers.rollout.gate import HEALTH_POLL_SECONDS
from workers.rollout.model import DRAIN_LABEL, DRAIN_SECONDS_LABEL, parse_go_duration
from workers.rollout.planner import ContainerInfo


def _stop_grace(rollout: Rollout, service: str) -> float:
    config = rollout.services.get(service) or {}
    grace = parse_go_duration(config.get("stop_grace_period"))
    return grace if grace is not None else defaults.STOP_GRACE_SECONDS


def drain_and_remove(rollout: Rollout, containers: Sequence[ContainerInfo], *, defer_removal: bool = False) -> None:
    """Drain (drain command, wait until no longer healthy, wait drain_seconds), stop, remove.

    `defer_removal`: leave them stopped, listed in `rollout.retired`, for `remove_retired` once the
    deployment is recorded (a stopped container serves nothing; removing it decides nothing).
    """
    waits_for_unhealthy: list[tuple[ContainerInfo, float]] = []
    pause = 0.0
    for c in containers:
        state = rollout.engine.state(c.id)
        if state is None:
            continue
        command = c.labels.get(DRAIN_LABEL, "").strip()
        seconds = _drain_seconds(rollout, c)
        if state.status != "running":
            continue
        if state.health in ("starting", "unhealthy"):
            # A health-aware proxy never routes to it: nothing to drain.
            continue
        if not command:
            # Nothing takes it out of rotation before it stops, so the pause is what keeps a proxy
            # that discovers containers from routing to nothing: by its end the proxy has found
            # the new containers.
            pause = max(pause, seconds)
            rollout.log(f"{c.service}: {c.name} has no {DRAIN_LABEL} label: no drain command; stopping it "
                        f"after the pause")
            continue
        rollout.log(f"{c.service}: draining {c.name}: sh -c {command!r}")
        done = rollout.engine.exec(c.id, ["sh", "-c", command])
        for line in done.output.splitlines():
            rollout.log(f"  {line}")
        if done.timed_out:
            rollout.log(f"{c.service}: drain command of {c.name} still running; going on")
        elif done.exit_code != 0:
            rollout.log(f"{c.service}: drain command of {c.name} exited {done.exit_code}; going on")
        pause = max(pause, seconds)
        if state.health == "healthy":
            waits_for_unhealthy.append((c, state.unhealthy_within))
    _wait_until_not_healthy(rollout, waits_for_unhealthy)
    if pause > 0:
        rollout.log(f"waiting {pause:g}s for proxies to stop routing and requests to finish")
        time.sleep(pause)
    for c in containers:
        grace = _stop_grace(rollout, c.service)
        if defer_removal:
            rollout.log(f"{c.service}: stopping {c.name} (grace {grace:g}s); it is removed once the deployment "
                        "is recorded")
            rollout.engine.stop(c.id, grace)
            rollout.retired.append(c.id)
            continue
        rollout.log(f"{c.service}: stopping {c.name} (grace {grace:g}s) and removing it")
        rollout.engine.stop(c.id, grace)
        rollout.engine.remove(c.id)


def remove_retired(docker_host: str | None, container_ids: Sequence[str], log: LogFn) -> None:
    """Remove the containers a rollout retired and left stopped (`drain_and_remove(defer_removal=True)`).

    Runs after the deployment is recorded; one it cannot remove stays stopped, out of the record of
    live containers, and the app's next rollout removes it as a left-over.
    """
    engine = DockerEngine.connect(docker_host)
    try:
        for container_id in container_ids:
            engine.remove(container_id)
    finally:
        engine.close()
    log(f"removed {len(container_ids)} retired container(s)")


def _drain_seconds(rollout: Rollout, c: ContainerInfo) -> float:
    raw = c.labels.get(DRAIN_SECONDS_LABEL)
    if raw is None:
        return defaults.DRAIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    # `not 0 <= value` also refuses NaN; a release deployed before labels were checked may hold "inf".
    if not 0 <= value <= defaults.MAX_RETIRE_WAIT_SECONDS:
        rollout.log(f"{c.service}: label {DRAIN_SECONDS_LABEL}={raw!r} is not a number of seconds from 0 to "
                    f"{defaults.MAX_RETIRE_WAIT_SECONDS:g}; using {defaults.DRAIN_SECONDS:g}")
        return defaults.DRAIN_SECONDS
    return value


def _wait_until_not_healthy(rollout: Rollout, waits: Sequence[tuple[ContainerInfo, float]]) -> None:
    """A health-aware proxy routes by health: wait until the drained containers report it."""
    if not waits:
        return
    begin = time.monotonic()
    deadline = begin + min(rollout.app.health_timeout, max(bound for _, bound in waits))
    remaining = dict(waits)
    while remaining and time.monotonic() < deadline:
        for c in list(remaining):
            state = rollout.engine.state(c.id)
            if state is None or state.health != "healthy":
                del remaining[c]
        if remaining:
            time.sleep(HEALTH_POLL_SECONDS)
    if remaining:
        names = ", ".join(c.name for c in remaining)
        rollout.log(f"still healthy after the drain command: {names}; the drain may not affect health")
    else:
        rollout.log(f"drained containers report unhealthy after {time.monotonic() - begin:.1f}s")

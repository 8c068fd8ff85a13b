"""The pure rollout planner: per service, what a rolling rollout does and why.

`unchanged`, `start` (no container yet), `rolling` (new containers beside the old, health gate,
drain, then stop the old) or `recreate` (compose replaces the container in place: services that
cannot or must not run twice). No engine, no I/O: the executor hands it what it read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from hooksvc.errors import DeployError
from workers.rollout.model import dependency_order, desired_replicas, reasons_not_to_run_twice, service_labels

#: Why a redeploy replaces a service whose config and image did not change.
FORCED_REASON = "unchanged, replaced by a redeploy"
#: Per-service label choosing `rolling` or `recreate` against the planner's own judgement.
STRATEGY_LABEL = "hooksvc.strategy"


@dataclass(frozen=True)
class ContainerInfo:
    """What planning needs to know about one container of a compose project (read by workers.docker_engine)."""

    id: str
    name: str
    service: str
    #: created | running | paused | restarting | removing | exited | dead
    state: str
    config_hash: str
    image_id: str
    compose_version: str = ""
    number: int = 0
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def running(self) -> bool:
        return self.state == "running"


class ServiceAction(StrEnum):
    """What a rollout does to one service (a host deployment's next request is another thing)."""

    UNCHANGED = "unchanged"
    START = "start"
    ROLLING = "rolling"
    RECREATE = "recreate"


@dataclass(frozen=True)
class ServicePlan:
    service: str
    action: ServiceAction
    reason: str
    #: Ids of the containers the service has now (the "old" ones of a rolling update).
    old: tuple[str, ...] = ()
    #: How many new containers a rolling update starts.
    replicas: int = 1
    #: Replaced although unchanged (a redeploy): compose must be told to recreate it.
    forced: bool = False


@dataclass(frozen=True)
class RolloutPlan:
    #: Every service of the release, dependencies before their dependants.
    services: tuple[ServicePlan, ...]
    #: Containers of services that are no longer in the compose files.
    orphans: tuple[ContainerInfo, ...] = ()

    def describe(self) -> list[str]:
        lines = [f"{p.service}: {p.action} ({p.reason})" for p in self.services]
        lines += [f"{c.service}: remove orphan {c.name} (service no longer in the compose files)"
                  for c in self.orphans]
        return lines



def plan_rollout(
    services: Mapping[str, Mapping[str, Any]],
    config_hashes: Mapping[str, str],
    image_ids: Mapping[str, str | None],
    containers: Sequence[ContainerInfo],
    *,
    compose_major: int = 2,
    force: bool = False,
) -> RolloutPlan:
    """Decide per service what the rollout does, and why.

    `services` is the resolved compose model's `services`, `config_hashes` what `config --hash=*`
    printed, `image_ids` the local image id each service will run (None when unknown), and
    `containers` the project's current containers. Changed means the config hash differs from a
    container's label, or the image differs from the container's: compose v2 leaves the image out
    of its hash, so a rebuilt image under the same tag only shows in the image id. `force` (a
    redeploy) replaces unchanged services too, each as a changed one would be (rolling or recreate).
    """
    by_service: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        by_service.setdefault(container.service, []).append(container)
    plans: list[ServicePlan] = []
    for name in dependency_order(services):
        plans.append(_plan_service(name, services[name], config_hashes.get(name, ""),
                                   image_ids.get(name), by_service.get(name, []), compose_major, force))
    orphans = tuple(c for c in containers if c.service not in services)
    return RolloutPlan(services=tuple(plans), orphans=orphans)


def _plan_service(name: str, config: Mapping[str, Any], config_hash: str, image_id: str | None,
                  current: list[ContainerInfo], compose_major: int, force: bool = False) -> ServicePlan:
    old = tuple(c.id for c in current)
    if not current:
        return ServicePlan(name, ServiceAction.START, "new service: no container yet")
    changes = _changes(config_hash, image_id, current, compose_major)
    running = sum(1 for c in current if c.running)
    if not changes and force:
        return replace(_plan_change(name, config, FORCED_REASON, running, old), forced=True)
    if not changes:
        if running == 0:
            return ServicePlan(name, ServiceAction.RECREATE, "unchanged, but no container is running", old)
        return ServicePlan(name, ServiceAction.UNCHANGED, "config hash and image unchanged", old)
    return _plan_change(name, config, "; ".join(changes), running, old)


def _plan_change(name: str, config: Mapping[str, Any], changed: str, running: int,
                 old: tuple[str, ...]) -> ServicePlan:
    """A changed service (`changed` says how): rolling, or recreated when it cannot or must not run twice."""
    replicas = desired_replicas(config, running)
    override = service_labels(config).get(STRATEGY_LABEL, "").strip().lower()
    blockers = reasons_not_to_run_twice(config)
    if override == "recreate":
        return ServicePlan(name, ServiceAction.RECREATE, f"{changed}; label {STRATEGY_LABEL}=recreate", old, replicas)
    if override == "rolling":
        why = f"; overrides: {', '.join(blockers)}" if blockers else ""
        return ServicePlan(name, ServiceAction.ROLLING, f"{changed}; label {STRATEGY_LABEL}=rolling{why}", old,
                           replicas)
    if override:
        raise DeployError(f"service {name}: label {STRATEGY_LABEL} must be 'rolling' or 'recreate', "
                          f"got {override!r}")
    if blockers:
        kind = "cannot" if len(blockers) > sum("named volume" in b for b in blockers) else "must not"
        return ServicePlan(name, ServiceAction.RECREATE,
                           f"{changed}; {kind} run twice: {', '.join(blockers)}", old, replicas)
    if running == 0:
        # Nothing serves, so there is nothing to keep up: a plain recreate is the honest action.
        return ServicePlan(name, ServiceAction.RECREATE, f"{changed}; no container is running", old, replicas)
    return ServicePlan(name, ServiceAction.ROLLING, changed, old, replicas)


def _changes(config_hash: str, image_id: str | None, current: list[ContainerInfo],
             compose_major: int) -> list[str]:
    changes: list[str] = []
    hashes = {c.config_hash for c in current}
    if hashes != {config_hash}:
        other = sorted({c.compose_version for c in current
                        if c.compose_version and not c.compose_version.startswith(f"{compose_major}.")})
        if other:
            changes.append(f"containers made by compose {', '.join(other)}, whose config hashes "
                           f"v{compose_major} cannot compare: treated as changed")
        else:
            old = ", ".join(sorted(h[:12] for h in hashes))
            changes.append(f"config changed (hash {old} -> {config_hash[:12]})")
    if image_id is not None:
        images = {c.image_id for c in current}
        if images != {image_id}:
            old = ", ".join(sorted(_short_id(i) for i in images))
            changes.append(f"image changed ({old} -> {_short_id(image_id)})")
    return changes


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]

"""One compose rollout in progress: what it works with, what it has done so far, and its result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hooksvc.config import AppConfig
from hooksvc.logs import LogFn
from workers.compose import ComposeProject
from workers.docker_engine import DockerEngine
from workers.rollout.live_record import LiveRecord
from workers.rollout.planner import ServiceAction


@dataclass(frozen=True)
class ServiceOutcome:
    """What the rollout did to one service: the containers it started and removed."""

    service: str
    action: ServiceAction
    reason: str
    started: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolloutResult:
    """What a compose rollout did, service by service, and which containers serve after it."""

    app: str
    project: str
    strategy: str
    #: e.g. "v2 2.40.3"
    compose: str
    services: tuple[ServiceOutcome, ...]
    #: Container ids serving after the rollout, per service.
    live: Mapping[str, tuple[str, ...]]
    leftovers_removed: tuple[str, ...] = ()
    orphans_removed: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass
class Rollout:
    """What one rollout works with (compose project, engine, log, live record) and how far it got."""

    app: AppConfig
    project: str
    compose: ComposeProject
    engine: DockerEngine
    log: LogFn
    record: LiveRecord
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Recreate every service even when nothing changed (a redeploy of the live release).
    force: bool = False
    #: Service -> compose's config hash (`compose config --hash`), when read while the images built.
    hashes: Mapping[str, str] | None = None
    #: Set once the new containers passed the gate and the record names them as the live ones.
    switched: bool = False
    #: Set once a failure turned out to be the engine going away (see `outage.engine_lost`).
    lost: bool = False
    #: Leave retired containers stopped, for `drain.remove_retired` once the deployment is recorded:
    #: removing them does not decide the outcome (the job's upkeep does it; see `conductor.roll_out`).
    defer_removal: bool = False
    #: Retired containers stopped and not yet removed (`defer_removal`): never among the live ones.
    retired: list[str] = field(default_factory=list)

    def result(self, outcomes: Sequence[ServiceOutcome], leftovers: Sequence[str] = (),
               orphans: Sequence[str] = ()) -> RolloutResult:
        """Record the containers that serve now and say what the rollout did."""
        live = self.live()
        self.record.save(self.project, live)
        return RolloutResult(
            app=self.app.name, project=self.project, strategy=self.app.strategy,
            compose=f"{self.compose.command.variant} {self.compose.command.version}",
            services=tuple(outcomes), live={s: tuple(ids) for s, ids in live.items()},
            leftovers_removed=tuple(leftovers), orphans_removed=tuple(orphans),
        )

    def live(self, leaving: Iterable[str] = ()) -> dict[str, list[str]]:
        """The project's container ids per service, minus those `leaving` and those retired."""
        gone = {*leaving, *self.retired}
        live: dict[str, list[str]] = {}
        for c in self.engine.containers(self.project):
            if c.id not in gone:
                live.setdefault(c.service, []).append(c.id)
        return live

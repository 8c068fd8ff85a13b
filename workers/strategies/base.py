"""The typed interface every deploy strategy implements, and the release it is handed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis

from hooksvc.config import AppConfig
from hooksvc.live_services import ServiceRecord, compose_services
from hooksvc.logs import LogFn
from workers.compose import ComposeProject, detect_compose
from workers.compose_confinement import check_compose_model, check_compose_sources
from workers.docker_engine import DockerEngine
from workers.images import release_id, releases_repository, service_release_tag
from workers.release_plan import WOULD_BUILD, ReleasePlan, ServiceChange
from workers.release_step_runner import ComposeReleaseSteps, StepRunner
from workers.rollout.conductor import Defer, roll_out
from workers.rollout.context import Rollout, RolloutResult
from workers.rollout.planner import ServiceAction, plan_rollout


@dataclass(frozen=True)
class Release:
    """A release checked out for one deployment, and where the worker keeps what it records."""

    app: AppConfig
    #: The release's checkout: its compose files and build contexts.
    directory: Path
    sha: str
    deployment_id: str
    log: LogFn
    #: The worker's state_dir (the compose strategies' record of live containers).
    state_dir: Path
    #: Redis, for records that workers on other machines read (None: this machine's files only).
    shared: redis.Redis | None = None
    #: The release's compose model (`compose config`) when the job has read it already, to check it
    #: before the build: the strategy then does not read it again.
    resolved: Mapping[str, Any] | None = None
    #: Recreate every service even when nothing changed (a redeploy of the live release).
    force_recreate: bool = False
    #: Where a strategy hands work that does not decide the outcome (removing the containers it
    #: retired), to run once the deployment is recorded; None: the strategy does it at once.
    defer: Defer | None = None


class Strategy(Protocol):
    """One way to make a release live: build it, run its release steps, replace the live release.

    Each strategy plans before it changes anything (the rolling planner, the stack file) and runs the
    app's `pre_deploy` steps after its build and `post_deploy` once the release is live. Both methods
    return what each service runs now, which the worker records for `hooksvc status`, and raise
    DeployError (the live release keeps serving, or `PostDeployFailed`: the new one is live) or
    EngineUnavailable.
    """

    #: The name an app's `strategy` gives, as listed in hooksvc/strategies.py.
    name: str

    def roll_out(self, release: Release) -> Sequence[ServiceRecord]:
        """Deploy a new release (a push, or a manual deployment)."""
        ...

    def roll_back(self, release: Release) -> Sequence[ServiceRecord]:
        """Deploy an earlier release again (`hooksvc rollback`)."""
        ...

    def plan(self, release: Release) -> ReleasePlan:
        """What `roll_out` of the checked-out release would change, found without changing anything and
        without building; Conflict when the strategy cannot say."""
        ...

    @property
    def release_steps(self) -> type[StepRunner]:
        """What runs the app's `pre_deploy`/`post_deploy` steps for this strategy, around its rollout."""
        ...



class ComposeStrategy(ABC):
    """A strategy that rolls releases out with compose (workers/rollout/conductor.py runs the shared steps).

    A rollback is a rollout too: the earlier release is checked out and built again, so to compose it
    is a release like any other.
    """

    name: str
    release_steps: type[ComposeReleaseSteps] = ComposeReleaseSteps

    def plan(self, release: Release) -> ReleasePlan:
        """The rollout planner's decisions for the release against what the engine runs now."""
        app = release.app
        compose = ComposeProject(command=detect_compose(), project=app.project or app.name,
                                 directory=release.directory, files=tuple(app.compose_files),
                                 docker_host=app.docker_host)
        model = dict(release.resolved) if release.resolved is not None else compose.config(release.log)
        check_compose_sources(release.directory, app.compose_files)
        check_compose_model(model, release.directory, confine_binds=app.docker_host is not None)
        services: dict[str, Any] = model["services"]
        hashes = compose.config_hashes(release.log)
        engine = DockerEngine.connect(app.docker_host)
        try:
            built_as = release_id(release.directory)
            new_images: dict[str, str | None] = {}
            for service, cfg in services.items():
                if "build" in cfg:
                    tag = f"{releases_repository(compose.project)}:{service_release_tag(service, built_as)}"
                    new_images[service] = engine.image_id(tag)
                else:
                    new_images[service] = engine.image_id(compose.image_name(service, cfg))
            containers = engine.containers(compose.project)
        finally:
            engine.close()
        major = 2 if compose.command.variant == "v2" else 1
        rollout = plan_rollout(services, hashes, new_images, containers, compose_major=major)
        old_images = {c.service: c.image_id for c in containers}
        changes = []
        for step in rollout.services:
            building = "build" in services[step.service] and new_images[step.service] is None
            reason = step.reason
            if building and step.action is ServiceAction.UNCHANGED:
                reason = "config unchanged; its image would be built first, and the service replaced if it differs"
            changes.append(ServiceChange(step.service, str(self.planned_action(step.action)), reason,
                                         old_images.get(step.service),
                                         WOULD_BUILD if building else new_images[step.service]))
        return ReleasePlan(tuple(changes), tuple(c.name for c in rollout.orphans))

    def planned_action(self, action: ServiceAction) -> ServiceAction:
        """What this strategy does for a service the planner gave `action` (the planner's own answer)."""
        return action

    def roll_out(self, release: Release) -> list[ServiceRecord]:
        return compose_services(self.roll_out_compose(release).live)

    def roll_back(self, release: Release) -> list[ServiceRecord]:
        return compose_services(self.roll_out_compose(release).live)

    def roll_out_compose(self, release: Release) -> RolloutResult:
        """Roll the release out and say what happened to each service."""
        return roll_out(self, release.app, release.directory, log=release.log, state_dir=release.state_dir,
                        shared=release.shared, resolved=release.resolved, force=release.force_recreate,
                        defer=release.defer)

    @abstractmethod
    def apply(self, rollout: Rollout) -> RolloutResult:
        """Make the built release's containers the live ones (after `pre_deploy`, before `post_deploy`)."""

    @abstractmethod
    def remove_leftovers(self, rollout: Rollout) -> list[str]:
        """Remove containers an interrupted rollout of this strategy left behind; their ids."""

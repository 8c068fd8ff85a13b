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
from workers.rollout.conductor import roll_out
from workers.rollout.context import Rollout, RolloutResult


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



class ComposeStrategy(ABC):
    """A strategy that rolls releases out with compose (workers/rollout/conductor.py runs the shared steps).

    A rollback is a rollout too: the earlier release is checked out and built again, so to compose it
    is a release like any other.
    """

    name: str

    def roll_out(self, release: Release) -> list[ServiceRecord]:
        return compose_services(self.roll_out_compose(release).live)

    def roll_back(self, release: Release) -> list[ServiceRecord]:
        return compose_services(self.roll_out_compose(release).live)

    def roll_out_compose(self, release: Release) -> RolloutResult:
        """Roll the release out and say what happened to each service."""
        return roll_out(self, release.app, release.directory, log=release.log, state_dir=release.state_dir,
                        shared=release.shared, resolved=release.resolved, force=release.force_recreate)

    @abstractmethod
    def apply(self, rollout: Rollout) -> RolloutResult:
        """Make the built release's containers the live ones (after `pre_deploy`, before `post_deploy`)."""

    @abstractmethod
    def remove_leftovers(self, rollout: Rollout) -> list[str]:
        """Remove containers an interrupted rollout of this strategy left behind; their ids."""

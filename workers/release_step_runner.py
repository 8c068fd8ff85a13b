"""Running an app's release steps (`pre_deploy`, `post_deploy`) in one-off containers of the new release.

`StepRunner` is what every strategy shares: the phases, the log lines the deployment page reads
back, and the errors; `ComposeReleaseSteps` runs the steps of the compose strategies (`rolling`,
`recreate`), and `workers.swarm_steps.SwarmReleaseSteps` those of strategy `swarm`.

For the compose strategies each step is `compose run --rm --no-deps -T --name NAME SERVICE argv...`
against the release's own compose files and project: the service's freshly built image, its environment, networks and
volumes, so the running database is reachable by its service name. Services the step's service
depends on that have no running container (on a first deployment: the database) are started first
with `up --no-recreate`, which never touches an existing container, and waited for. A step is
bounded by the app's `health_timeout`; on a timeout, or whatever ends it, the one-off container is
killed and removed by its name (killing the compose client alone would leave it running). Step
containers a worker that died mid-step left behind are removed before the next steps run.

A strategy calls its runner's `check` once it knows the release's services (before anything
changes), `run(PRE_DEPLOY)` after its build and before any container is replaced, and
`run(POST_DEPLOY)` once the release is live.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hooksvc.config import AppConfig
from hooksvc.errors import DeployError, PostDeployFailed, ReleaseStepFailed
from hooksvc.logs import LogFn
from hooksvc.release_steps import (
    POST_DEPLOY,
    PRE_DEPLOY,
    ReleaseStep,
    finished_line,
    started_line,
    unknown_services,
)
from workers.compose import UP_TIMEOUT_SECONDS, ComposeProject
from workers.docker_engine import ContainerState, DockerEngine

#: How often a dependency started for a step is looked at until it is ready.
READY_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class StepEnd:
    """How one step's one-off container ended."""

    #: Its exit code; None when it has none (timed out, or it never ran).
    exit_code: int | None
    seconds: float
    #: It outlived `health_timeout` and was killed.
    timed_out: bool = False
    #: Why it ended without an exit code (the engine refused to run it).
    error: str = ""


@dataclass
class StepRunner:
    """The release steps of one deployment of `app`: what every strategy shares.

    A strategy's runner says how a step's one-off container runs (`_run_step`), which services must
    run first (`_start_dependencies`) and how to find what an interrupted deployment left
    (`remove_leftovers`); running the phases, the log lines and the errors are the same for all.
    """

    app: AppConfig
    log: LogFn
    #: What is killed when a step outlives `health_timeout`, for the log and the error.
    killed = "its container"

    @property
    def configured(self) -> bool:
        return bool(self.app.pre_deploy or self.app.post_deploy)

    def steps(self, phase: str) -> tuple[ReleaseStep, ...]:
        return self.app.pre_deploy if phase == PRE_DEPLOY else self.app.post_deploy

    def check(self, services: Mapping[str, Any]) -> None:
        """Refuse steps naming a service the release's compose files do not define."""
        problems = [p for phase in (PRE_DEPLOY, POST_DEPLOY)
                    for p in unknown_services(phase, self.steps(phase), services)]
        if problems:
            raise DeployError(f"release steps of app {self.app.name} name unknown services; nothing was changed: "
                              + "; ".join(problems))

    def run(self, phase: str, services: Mapping[str, Mapping[str, Any]]) -> None:
        """Run the phase's steps in order; the first failure raises (PostDeployFailed after the rollout)."""
        steps = self.steps(phase)
        if steps:
            self.remove_leftovers()
        for number, step in enumerate(steps, 1):
            self._start_dependencies(step.service, services)
            self.log(started_line(phase, number, len(steps), step))
            self._report(phase, number, len(steps), step, self._run_step(phase, number, step))

    def _report(self, phase: str, number: int, total: int, step: ReleaseStep, end: StepEnd) -> None:
        if end.exit_code == 0 and not end.timed_out:
            self.log(finished_line(phase, number, total, step, True, f"(exit 0) in {end.seconds:.1f}s"))
            return
        if end.timed_out:
            detail = f"(timed out after {self.app.health_timeout:g}s; {self.killed} was killed)"
        elif end.exit_code is None:
            detail = f"({end.error or 'no exit code'}) in {end.seconds:.1f}s"
        else:
            detail = f"(exit {end.exit_code}) in {end.seconds:.1f}s"
        self.log(finished_line(phase, number, total, step, False, detail))
        what = f"{phase} step {number} of {total} ({step.service}: {step.command_line}) failed {detail}"
        if phase == POST_DEPLOY:
            raise PostDeployFailed(f"{what}; the new release is live")
        raise ReleaseStepFailed(f"{what}; nothing was rolled out, the live release keeps serving")

    def remove_leftovers(self) -> None:
        """Remove step containers a worker that died mid-step left behind (the app's lock says none is ours)."""
        raise NotImplementedError

    def _start_dependencies(self, service: str, services: Mapping[str, Mapping[str, Any]]) -> None:
        """Start (and wait for) the services `service` depends on that do not run yet."""
        raise NotImplementedError

    def _run_step(self, phase: str, number: int, step: ReleaseStep) -> StepEnd:
        """Run one step in a one-off container of the new release, bounded by `health_timeout`, and remove it."""
        raise NotImplementedError


@dataclass
class ComposeReleaseSteps(StepRunner):
    """The release steps of one deployment of `app`, run through the release's compose project."""

    compose: ComposeProject
    engine: DockerEngine

    def _container_prefix(self, phase: str) -> str:
        return f"{self.compose.project}-{phase.replace('_', '-')}-"

    def remove_leftovers(self) -> None:
        prefixes = tuple(self._container_prefix(phase) for phase in (PRE_DEPLOY, POST_DEPLOY))
        for name, container_id in sorted(self.engine.oneoff_containers(self.compose.project).items()):
            if name.startswith(prefixes):
                self.log(f"removing {name}, a release step container left by an interrupted deployment")
                self.engine.remove(container_id)

    def _run_step(self, phase: str, number: int, step: ReleaseStep) -> StepEnd:
        name = f"{self._container_prefix(phase)}{number}-{uuid.uuid4().hex[:8]}"
        try:
            # Before the switch (`pre_deploy`) an operator's cancel kills the step; its container goes below.
            result = self.compose.run(self.compose.run_oneoff_argv(step.service, step.command, name),
                                      log=lambda line: self.log(f"  {line}"), timeout=self.app.health_timeout,
                                      cancellable=True)
        finally:
            # `--rm` removes it on a normal end; after a timeout or a killed client it would stay.
            self.engine.remove(name)
        if result.returncode == -9:
            return StepEnd(None, result.seconds, timed_out=True)
        return StepEnd(result.returncode, result.seconds)

    def _start_dependencies(self, service: str, services: Mapping[str, Mapping[str, Any]]) -> None:
        """Start (and wait for) the services `service` depends on that have no running container."""
        missing = [dep for dep in dependency_closure(service, services)
                   if not any(c.running for c in self.engine.containers(self.compose.project, dep))]
        if not missing:
            return
        self.log(f"starting {', '.join(missing)} for the release steps of {service}: not running yet")
        self.compose.check(self.compose.start_missing_argv(missing), log=self.log, timeout=UP_TIMEOUT_SECONDS,
                           what=f"compose up {' '.join(missing)}")
        for dep in missing:
            self._wait_ready(dep)

    def _wait_ready(self, service: str) -> None:
        """Until the service's containers are healthy (or running, without a healthcheck)."""
        deadline = time.monotonic() + self.app.health_timeout
        while True:
            states = [self.engine.state(c.id) for c in self.engine.containers(self.compose.project, service)]
            if states and all(s is not None and s.status == "running" and s.health in (None, "healthy")
                              for s in states):
                return
            broken = [s for s in states if s is None or s.status in ("exited", "dead") or s.health == "unhealthy"]
            if broken or time.monotonic() > deadline:
                raise ReleaseStepFailed(
                    f"{service}, started for the release steps, is not ready "
                    f"({'; '.join(_describe(s) for s in (broken or states)) or 'no container'})")
            time.sleep(READY_POLL_SECONDS)


def _describe(state: ContainerState | None) -> str:
    if state is None:
        return "its container disappeared"
    return f"{state.name}: {state.status}, health {state.health or 'none'}, exit code {state.exit_code}"


def dependency_closure(service: str, services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every service `service` depends on, directly or not, dependencies first."""
    ordered: list[str] = []

    def visit(name: str, path: Sequence[str]) -> None:
        for dep in sorted(str(d) for d in (services.get(name, {}).get("depends_on") or [])):
            if dep not in ordered and dep not in path and dep in services:
                visit(dep, [*path, dep])
                ordered.append(dep)

    visit(service, [service])
    return ordered

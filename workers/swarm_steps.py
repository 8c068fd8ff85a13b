"""Release steps (`pre_deploy`, `post_deploy`) of strategy `swarm`: each step a one-off task of the stack.

A step runs as a service of the stack made from the planned stack file's entry for the step's
service (`workers.stack_file.plan_stack`): the release's image tag, the service's environment,
networks, volumes, secrets and placement, with the step's argv as its command (the image's or the
file's entrypoint stays, as with `compose run`), no published port, no healthcheck, no network
alias, one task that Swarm never restarts (`restart_policy.condition: none`), and the label
`hooksvc.release-step`. `docker stack deploy` without `--prune`, of a stack file holding only that
service, creates it, so the CLI converts the file as it does for the release, and nothing else of
the stack changes. Its service is named `<service>-<phase>-<n>-<random>`, so Swarm's DNS names of
the stack's services (`web`, `tasks.web`) never list it.

The task's end is waited for, bounded by `health_timeout`: `complete` is exit 0, `failed` carries
the container's exit code, `rejected` the engine's reason. Its output goes to the deployment log
meanwhile, and the service is removed whatever happened (removing it kills a task still running).
Step services a worker that died mid-step left behind are removed before the next steps run.

On a stack's first deployment the services a step's service depends on (`depends_on`, directly or
not) do not exist yet, nor do the stack's networks: they are deployed first the same way, as the
release defines them, and waited for as the deployment waits for any service; when `pre_deploy`
fails they are removed again, so the stack is as it was. A service that exists already is never
touched here: the release updates it after `pre_deploy`, as the others.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hooksvc.errors import DeployError
from hooksvc.release_steps import ReleaseStep
from workers.release_step_runner import StepEnd, StepRunner, dependency_closure
from workers.stack_file import StackPlan
from workers.swarm_engine import SwarmEngine, TaskState

#: The service label that marks a step's service; its value is the phase.
STEP_LABEL = "hooksvc.release-step"
#: How often a step's task and output are looked at.
STEP_POLL_SECONDS = 0.5
#: Task states a step's task does not leave again.
TASK_ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
#: The deploy settings of a service that a step's service keeps: where it may run, and with what.
KEPT_DEPLOY_KEYS = ("placement", "resources", "endpoint_mode")


@dataclass
class SwarmReleaseSteps(StepRunner):
    """The release steps of one swarm deployment: one-off services of the planned stack."""

    engine: SwarmEngine
    plan: StackPlan
    #: `docker stack deploy` (without `--prune`) of a stack file.
    deploy: Callable[[dict[str, Any]], None]
    #: Wait until the named services of the stack run their tasks; raises when one does not.
    converge: Callable[[Sequence[str]], None]
    killed = "its task"
    #: Services deployed (and converged) for the steps because the stack did not have them yet.
    deployed: list[str] = field(default_factory=list)
    #: Per step service, the newest log timestamp already logged.
    _logged: dict[str, str] = field(default_factory=dict)

    def remove_leftovers(self) -> None:
        for name, service_id in sorted(self.engine.labelled_services(self.plan.stack, STEP_LABEL).items()):
            self.log(f"removing {name}, a release step service left by an interrupted deployment")
            self.engine.remove_service(service_id)

    def _start_dependencies(self, service: str, services: Mapping[str, Mapping[str, Any]]) -> None:
        existing = self.engine.services(self.plan.stack)
        missing = [dep for dep in dependency_closure(service, services) if dep not in existing]
        if not missing:
            return
        self.log(f"deploying {', '.join(missing)} for the release steps of {service}: not in the stack yet")
        stack_services = self.plan.document["services"]
        self.deploy(self._stack_file({dep: stack_services[dep] for dep in missing}))
        self.converge(missing)  # when one does not converge, the services it deployed are removed
        self.deployed += missing

    def remove_deployed(self) -> None:
        """After a failed `pre_deploy`: remove the services deployed for it, so the stack is as it was."""
        for name in self.deployed:
            self.log(f"{name}: removing the service deployed for the release steps (nothing was rolled out)")
            self.engine.remove_service(f"{self.plan.stack}_{name}")
        self.deployed.clear()

    def _stack_file(self, services: Mapping[str, Any]) -> dict[str, Any]:
        """The planned stack file with only `services`: its networks, volumes, secrets and configs stay."""
        document = {key: value for key, value in self.plan.document.items() if key != "services"}
        document["services"] = dict(services)
        return document

    def _run_step(self, phase: str, number: int, step: ReleaseStep) -> StepEnd:
        key = f"{step.service}-{phase.replace('_', '-')}-{number}-{uuid.uuid4().hex[:8]}"
        name = f"{self.plan.stack}_{key}"
        config = step_service(self.plan.document["services"][step.service], step.command, phase)
        try:
            try:
                self.deploy(self._stack_file({key: config}))
            except DeployError:  # the command's output is in the log already
                return StepEnd(None, 0.0, error=f"docker stack deploy of its service {name} failed")
            started = time.monotonic()
            state = self.engine.service(name)
            if state is None:
                return StepEnd(None, 0.0, error=f"docker stack deploy created no service {name}")
            while True:
                tasks = self.engine.tasks(state.id)
                ended = next((t for t in tasks if t.state in TASK_ENDED), None)
                self._log_output(state.id)
                seconds = time.monotonic() - started
                if ended is not None:
                    return _end_of(ended, seconds)
                if seconds > self.app.health_timeout:
                    return StepEnd(None, seconds, timed_out=True)
                time.sleep(STEP_POLL_SECONDS)
        finally:
            self.engine.remove_service(name)

    def _log_output(self, service_id: str) -> None:
        """Log the step's output that was not logged yet (Swarm's log API has no cursor but a time)."""
        last = self._logged.get(service_id, "")
        since = int(_parse_timestamp(last).timestamp()) if last else 0
        for line in self.engine.service_log_lines(service_id, since):
            stamp, _, text = line.partition(" ")
            if last and _timestamp_key(stamp) <= _timestamp_key(last):
                continue
            self.log(f"  {text}")
            last = stamp
        if last:
            self._logged[service_id] = last


def step_service(config: Mapping[str, Any], command: Sequence[str], phase: str) -> dict[str, Any]:
    """The stack file entry of a step's service, made from the entry of the service it runs in."""
    service = {key: copy.deepcopy(value) for key, value in config.items()
               if key not in ("ports", "healthcheck", "depends_on", "deploy", "container_name")}
    # The CLI interpolates `$NAME` in a stack file: `$$` is a literal dollar.
    service["command"] = [arg.replace("$", "$$") for arg in command]
    service["healthcheck"] = {"disable": True}
    networks = service.get("networks")
    if isinstance(networks, Mapping):
        service["networks"] = {name: ({k: v for k, v in settings.items() if k != "aliases"} or None)
                               if isinstance(settings, Mapping) else settings
                               for name, settings in networks.items()}
    deploy = config.get("deploy")
    kept = {k: copy.deepcopy(v) for k, v in deploy.items() if k in KEPT_DEPLOY_KEYS} \
        if isinstance(deploy, Mapping) else {}
    service["deploy"] = {**kept, "mode": "replicated", "replicas": 1, "restart_policy": {"condition": "none"},
                         "labels": {STEP_LABEL: phase}}
    return service


def _end_of(task: TaskState, seconds: float) -> StepEnd:
    if task.state == "complete":
        return StepEnd(0, seconds)
    if task.exit_code:
        return StepEnd(task.exit_code, seconds)
    return StepEnd(None, seconds, error=f"task {task.state}: {task.error or task.message}")


def _timestamp_key(stamp: str) -> tuple[str, str]:
    """A sortable form of an RFC 3339 timestamp with up to nine fractional digits (`...:01.5Z`)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


def _parse_timestamp(stamp: str) -> datetime:
    whole = stamp.rstrip("Z").partition(".")[0]
    return datetime.fromisoformat(f"{whole}+00:00")


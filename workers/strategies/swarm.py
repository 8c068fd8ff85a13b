"""Strategy `swarm`: a release deployed as a Docker Swarm stack, rolled out and rolled back by Swarm.

The steps, each logged:
  1. the engine must be a Swarm manager; the compose model is read and planned into a stack file
     (`workers.stack_file.plan_stack`), which refuses a file that cannot work before anything changes;
  2. `compose build`, then every built image is tagged with the release tag (`<sha12>-<deployment id>`);
     a built service whose image is the one its live service runs keeps the live tag in the stack file,
     so Swarm does not replace its tasks (`_keep_unchanged`);
     a rollback runs the images an earlier deployment of the same commit built, when the engine still
     has them all, instead of building again;
  3. with a `registry`, the release tags are pushed there, so every node can pull them;
  4. the `pre_deploy` release steps, each a one-off task of the release's image (workers/swarm_steps.py):
     a failure ends the deployment before the stack's services change;
  5. `docker stack deploy --prune` of the generated stack file;
  6. convergence, read from each service's `UpdateStatus` (the command's exit code says nothing: it is
     0 even when Swarm rolls the update back later): `completed` succeeds once the new spec's tasks run
     (`failure_action: continue` completes an update past failed tasks: a failed new task fails it);
     `rollback_completed`, `paused` and `rollback_paused` fail, naming the service and its task's error; a service that
     runs no update (a new service, or nothing to replace) has converged once its tasks of the current
     spec run (Swarm reports a task with a healthcheck `running` only once it is healthy), and fails
     as soon as one of them fails, as the rolling strategy's health gate does;
  7. the `post_deploy` release steps: a failure ends the deployment `failed`, the release staying live.

Nothing is left half-done: when one service fails (or a service is not done within its bound, see
`stack_file.rollout_bound`), the services this deployment updated are rolled back to their previous
spec (`docker service rollback`), the services it created are removed and those `--prune` removed
are created again from their specs, so the previous release serves as a whole. A service whose file
asks Swarm to pause on failure (`failure_action: pause`) is left paused, as asked, and the error says
how to roll it back.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import docker.errors
import yaml

from hooksvc import defaults
from hooksvc.config import AppConfig
from hooksvc.errors import Conflict, DeployError, DeploymentCancelled, HealthCheckFailed
from hooksvc.live_services import ServiceRecord, stack_services
from hooksvc.logs import LogFn
from hooksvc.release_steps import POST_DEPLOY, PRE_DEPLOY
from workers import cancellation, process
from workers.compose import UP_TIMEOUT_SECONDS, ComposeProject, detect_compose, failure_message
from workers.process import DOCKER_ENV
from workers.release_plan import ReleasePlan
from workers.release_step_runner import StepRunner
from workers.stack_file import RELEASE_TAG, StackPlan, plan_stack, release_tag
from workers.strategies.base import Release
from workers.swarm_engine import ServiceState, SwarmEngine, TaskState
from workers.swarm_steps import STEP_LABEL, SwarmReleaseSteps

#: Services and tasks are read this often while a stack converges.
CONVERGE_POLL_SECONDS = 0.5
#: `UpdateStatus.State`s that end a deployment `failed`, and those Swarm is still working through.
UPDATE_STATES_FAILED = ("paused", "rollback_paused", "rollback_completed")
UPDATE_STATES_BUSY = ("updating", "rollback_started")
#: Task states that end a task that did not do its job.
TASK_STATES_FAILED = ("failed", "rejected")
_TASK_IN_MESSAGE = re.compile(r"\btask ([a-z0-9]{25})\b")


@dataclass(frozen=True)
class SwarmRelease:
    """Which release a swarm deployment rolls out."""

    sha: str
    deployment_id: str
    #: A rollback: run the images an earlier deployment of this commit built, if they all still exist.
    reuse_images: bool = False


@dataclass(frozen=True)
class StackResult:
    stack: str
    tag: str
    reused_images: bool
    #: Service (as the stack file names it) -> the image its spec runs now.
    images: Mapping[str, str]
    seconds: float = 0.0


def deploy_stack(app: AppConfig, release_dir: Path, release: SwarmRelease, *, log: LogFn,
                 resolved: Mapping[str, Any] | None = None) -> StackResult:
    """Build, tag, push and deploy the release in `release_dir` as the stack `app.project`.

    Raises DeployError (the file cannot work, the engine is no manager, a build, push or the deploy
    command failed: the live release was not touched), ReleaseStepFailed (a `pre_deploy` step failed: the
    stack's services were not changed), HealthCheckFailed (the stack did not converge: the previous
    release serves again) or PostDeployFailed (a `post_deploy` step failed: the release is live).
    `resolved`: the compose model when the caller has read it already (the job checks it before the
    build), so it is not read twice.
    """
    started = time.monotonic()
    stack = app.project or app.name
    command = detect_compose(log=log)
    compose = ComposeProject(command=command, project=stack, directory=release_dir,
                             files=tuple(app.compose_files), docker_host=app.docker_host)
    where = app.docker_host or "the local Docker engine"
    log(f"swarm deployment of {app.name}: stack {stack} on {where}, compose {command.variant} {command.version}"
        + (f", registry {app.registry}" if app.registry else ""))
    engine = SwarmEngine.connect(app.docker_host)
    try:
        swarm = engine.swarm()
        if not swarm.manager:
            raise DeployError(
                f"{where} is not a Swarm manager (swarm state {swarm.state}"
                f"{': ' + swarm.error if swarm.error else ''}): "
                "strategy swarm deploys a stack there; run `docker swarm init` on it (or join it to the swarm "
                "as a manager), or point docker_host at a manager"
            )
        model = dict(resolved) if resolved is not None else compose.config(log)
        services: Mapping[str, Mapping[str, Any]] = model.get("services") or {}
        # A step naming an unknown service is refused before anything is built or changed.
        StepRunner(app, log).check(services)
        plan = _plan(app, stack, model, compose, swarm.nodes, release_tag(release.sha, release.deployment_id))
        reused = _reusable_tag(engine, plan, release, log) if release.reuse_images else ""
        if reused:
            plan = _plan(app, stack, model, compose, swarm.nodes, reused)
        for note in plan.notes:
            log(note)
        if reused:
            log(f"rollback: running the images of release {reused} again, without building")
        else:
            log("building images")
            cancellation.active().at("building")
            compose.build(log)
            _tag_release_images(engine, plan, log)
        if app.registry:
            _push(engine, plan, app.registry, log)
        plan = _keep_unchanged(engine, plan, engine.services(stack), log)
        steps = _release_steps(app, engine, plan, release_dir, log)
        # Before anything else: `--prune` would remove a left-over step service without a word.
        steps.remove_leftovers()
        try:
            cancellation.active().at("running pre_deploy")
            steps.run(PRE_DEPLOY, services)
        except Exception:
            steps.remove_deployed()
            raise
        before = _snapshot(engine, stack)
        pruned = _pruned_specs(engine, plan, before)
        try:  # the last moment an operator's cancel is honoured
            cancellation.active().past_return("docker stack deploy had started updating the stack's services")
        except DeploymentCancelled:
            steps.remove_deployed()
            raise
        _stack_deploy(app, plan.stack, plan.document, release_dir, log)
        _Convergence(engine, plan, before, app.docker_host, log, pruned=pruned).wait()
        steps.run(POST_DEPLOY, services)
        images = {name: state.image for name, state in engine.services(stack).items()}
    finally:
        engine.close()
    seconds = time.monotonic() - started
    log(f"stack {stack} converged in {seconds:.1f}s: " +
        ", ".join(f"{name} runs {image}" for name, image in sorted(images.items())))
    return StackResult(stack=stack, tag=reused or release_tag(release.sha, release.deployment_id),
                       reused_images=reused != "", images=images, seconds=seconds)


def _snapshot(engine: SwarmEngine, stack: str) -> dict[str, tuple[ServiceState, set[str]]]:
    """The stack's services now, with the ids of their tasks (what `_Convergence` compares against)."""
    return {name: (state, {t.id for t in engine.tasks(state.id)}) for name, state in engine.services(stack).items()}


def _keep_unchanged(engine: SwarmEngine, plan: StackPlan, live: Mapping[str, ServiceState], log: LogFn) -> StackPlan:
    """A built service whose release image is the image its live spec runs keeps the live spec's image
    name: its spec does not change, so Swarm leaves its tasks alone (a stop-first service keeps serving)."""
    services = dict(plan.document.get("services") or {})
    kept = False
    for image in plan.images:
        state = live.get(image.service)
        if state is None or not state.image or image.service not in services:
            continue
        live_name = state.image.split("@", 1)[0]  # with a registry the spec pins the digest too
        new = engine.image_id(image.release)
        if new is None or engine.image_id(live_name) != new:
            continue
        services[image.service] = {**services[image.service], "image": state.image}
        kept = True
        log(f"{image.service}: unchanged (its image {new.removeprefix('sha256:')[:12]} is the one the live "
            f"release runs): it keeps {live_name}, so Swarm leaves its tasks as they are")
    return dataclasses.replace(plan, document={**plan.document, "services": services}) if kept else plan


def _pruned_specs(engine: SwarmEngine, plan: StackPlan,
                  before: Mapping[str, tuple[ServiceState, set[str]]]) -> dict[str, dict[str, Any]]:
    """The specs of the live services `--prune` is about to remove, to create them again if the release fails."""
    planned = set(plan.document.get("services") or {})
    specs: dict[str, dict[str, Any]] = {}
    for name, (state, _tasks) in before.items():
        if name in planned:
            continue
        spec = engine.service_spec(state.id)
        if spec is not None and STEP_LABEL not in (spec.get("Labels") or {}):
            specs[name] = spec
    return specs


def _release_steps(app: AppConfig, engine: SwarmEngine, plan: StackPlan, release_dir: Path,
                   log: LogFn) -> SwarmReleaseSteps:
    """The release's steps, run as one-off services of the stack (workers/swarm_steps.py)."""

    def deploy(document: dict[str, Any]) -> None:
        _stack_deploy(app, plan.stack, document, release_dir, log, prune=False)

    def converge(names: Sequence[str]) -> None:
        before = _snapshot(engine, plan.stack)
        part = dataclasses.replace(plan, services=tuple(s for s in plan.services if s.service in names))
        _Convergence(engine, part, before, app.docker_host, log).wait()

    return Swarm.release_steps(app, log, engine=engine, plan=plan, deploy=deploy, converge=converge)


def _plan(app: AppConfig, stack: str, model: Mapping[str, object], compose: ComposeProject, nodes: int,
          tag: str) -> StackPlan:
    return plan_stack(model, stack=stack, tag=tag, registry=app.registry, nodes=nodes,
                      health_timeout=app.health_timeout, built_name=compose.image_name,
                      release_dir=str(compose.directory))


def _reusable_tag(engine: SwarmEngine, plan: StackPlan, release: SwarmRelease, log: LogFn) -> str:
    """The newest release tag of this commit that the engine holds for every built image, or ""."""
    if not plan.images:
        return ""
    common: set[str] | None = None
    for image in plan.images:
        tags = {t for t in engine.local_tags(image.repository)
                if (m := RELEASE_TAG.fullmatch(t)) and release.sha.startswith(m.group(1))}
        common = tags if common is None else common & tags
    if not common:
        log(f"rollback: no earlier images of {release.sha[:12]} for every built service; building them again")
        return ""
    return max(common, key=lambda t: int(t.rsplit("-", 1)[1]))


def _tag_release_images(engine: SwarmEngine, plan: StackPlan, log: LogFn) -> None:
    for image in plan.images:
        image_id = engine.image_id(image.built)
        if image_id is None:
            raise DeployError(f"service {image.service}: compose built no image {image.built}")
        engine.tag(image_id, image.release)
        log(f"{image.service}: image {image_id.removeprefix('sha256:')[:12]} tagged {image.release}")


def _push(engine: SwarmEngine, plan: StackPlan, registry: str, log: LogFn) -> None:
    for image in plan.images:
        log(f"{image.service}: pushing {image.release}")
        try:
            for line in engine.push(image.release):
                log(f"  {line}")
        except docker.errors.DockerException as exc:
            raise DeployError(
                f"service {image.service}: pushing {image.release} to {registry} failed: {exc}. Check that the "
                f"registry answers at {registry} from the Docker engine (a registry on another host without TLS "
                "must be in the engine's insecure-registries)"
            ) from None


def _stack_deploy(app: AppConfig, stack: str, document: Mapping[str, Any], release_dir: Path, log: LogFn,
                  prune: bool = True) -> None:
    """`docker stack deploy` of a stack file; the CLI checks the file before it changes anything.

    With `prune`, services of the stack the file does not hold are removed; without, they stay as they are.
    """
    argv = ["docker", "stack", "deploy", *(["--prune"] if prune else []),
            # Resolving digests needs a registry; without one every image is local to this node anyway.
            "--resolve-image", "always" if app.registry else "never"]
    if app.registry:
        argv.append("--with-registry-auth")
    env = {"DOCKER_HOST": app.docker_host} if app.docker_host else {}
    # The file holds the services' environment (passwords too): private to the worker, never logged.
    with tempfile.TemporaryDirectory(prefix="hooksvc-stack-") as tmp:
        path = Path(tmp) / f"{stack}.yml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(dict(document), out, sort_keys=False)
        argv += ["--compose-file", str(path), stack]
        log("$ " + " ".join(argv))
        result = process.run(argv, cwd=release_dir, env=env, inherit=DOCKER_ENV, log=log, timeout=UP_TIMEOUT_SECONDS)
    if not result.ok:
        raise DeployError(failure_message("docker stack deploy", result) +
                          "\n(the compose files use something a Swarm stack file does not support, or the "
                          "engine refused a service: fix what the output names)")


@dataclass
class _Convergence:
    """Waits until every service of the stack runs the release, and undoes the rest when one does not."""

    engine: SwarmEngine
    plan: StackPlan
    #: The stack's services before the deploy, with the ids of their tasks then.
    before: Mapping[str, tuple[ServiceState, set[str]]]
    docker_host: str | None
    log: LogFn
    #: Per service, the last thing logged about it ("done" once it converged).
    seen: dict[str, str] = field(default_factory=dict)
    #: Per service, the last update message Swarm gave while busy: it names the task that failed.
    messages: dict[str, str] = field(default_factory=dict)
    #: The specs of the services `--prune` removed (by their stack name): created again on failure.
    pruned: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def wait(self) -> None:
        begin = time.monotonic()
        bounds = {s.service: s.bound for s in self.plan.services}
        self.log(f"waiting for {len(bounds)} service(s) to converge (at most {max(bounds.values(), default=0):.0f}s)")
        pending = set(bounds)
        while pending:
            for name in sorted(pending):
                state = self.engine.service(self._full(name))
                if state is None:
                    self._fail(name, f"service {name} disappeared while it converged")
                problem = self._look(name, state)
                if problem is not None:
                    self._fail(name, problem)
            pending -= {n for n in pending if self.seen.get(n) == "done"}
            late = sorted(n for n in pending if time.monotonic() - begin > bounds[n])
            if late:
                self._fail(late[0], f"service {late[0]} did not converge within {bounds[late[0]]:.0f}s "
                                    f"({self.seen.get(late[0]) or 'no update started'})")
            if pending:
                time.sleep(CONVERGE_POLL_SECONDS)

    def _full(self, name: str) -> str:
        return f"{self.plan.stack}_{name}"

    def _note(self, name: str, what: str, line: str) -> None:
        if self.seen.get(name) != what:
            self.seen[name] = what
            self.log(line)

    def _look(self, name: str, state: ServiceState) -> str | None:
        """None while the service converges or once it has (`seen[name] == "done"`); else what failed."""
        update = state.update_state
        if update == "completed":
            # `failure_action: continue` lets Swarm complete an update past failed tasks: the tasks decide.
            return self._tasks_converged(name, state, after=f"Swarm completed its update of {name}, but ")
        if update in UPDATE_STATES_BUSY:
            self.messages[name] = state.update_message
            message = f" ({state.update_message})" if state.update_message else ""
            self._note(name, update, f"{name}: {update.replace('_', ' ')}{message}")
            return None
        if update in UPDATE_STATES_FAILED:
            return self._update_failure(name, state)
        # No update ran since the spec changed: a new service, or one with nothing to replace.
        return self._tasks_converged(name, state)

    def _tasks_converged(self, name: str, state: ServiceState, after: str = "") -> str | None:
        """None while the current spec's tasks start or once all run (then `seen[name] == "done"`); what
        failed when one of this deployment's tasks did."""
        old = self.before.get(name, (None, set()))[1]
        all_tasks = self.engine.tasks(state.id)
        failed = [t for t in all_tasks if t.runs(state) and t.id not in old and t.state in TASK_STATES_FAILED]
        if failed:
            why = (f"{after}a new task failed (update_config.failure_action: continue goes on past failed "
                   "tasks; hooksvc does not count that as success)") if after else "a new task failed"
            return f"service {name}: {why}: {self._describe(name, failed[0])}"
        tasks = [t for t in all_tasks if t.desired == "running"]
        running = [t for t in tasks if t.state == "running" and t.runs(state)]
        wanted = state.replicas if state.replicas is not None else max(len(tasks), 1)
        if len(running) >= wanted and len(running) == len(tasks):
            self._note(name, "done", f"{name}: {len(running)} task(s) running {state.image}")
        else:
            self._note(name, f"starting {len(running)}", f"{name}: {len(running)} of {wanted} task(s) running")
        return None

    def _update_failure(self, name: str, state: ServiceState) -> str:
        how = {
            "rollback_completed": "its new tasks failed and Swarm rolled it back to the previous release",
            "paused": "its new tasks failed and Swarm paused the update (the file's update_config.failure_action); "
                      f"roll it back with `docker service rollback {self._full(name)}`, or fix and push",
            "rollback_paused": "its new tasks failed, and so did Swarm's rollback: inspect it with "
                               f"`docker service ps {self._full(name)}`",
        }[state.update_state]
        task = self._failed_task(name, state)
        detail = f": {self._describe(name, task)}" if task is not None else f" ({state.update_message})"
        return f"service {name}: {how}{detail}"

    def _failed_task(self, name: str, state: ServiceState) -> TaskState | None:
        """The task Swarm names in the update's message, else the newest failed one of this deployment."""
        for message in (state.update_message, self.messages.get(name, "")):
            match = _TASK_IN_MESSAGE.search(message)
            if match:
                task = self.engine.task(match.group(1))
                if task is not None:
                    return task
        old = self.before.get(name, (None, set()))[1]
        failed = [t for t in self.engine.tasks(state.id)
                  if t.id not in old and (t.state in TASK_STATES_FAILED or t.error)]
        return failed[0] if failed else None

    def _describe(self, name: str, task: TaskState) -> str:
        which = f"{name}.{task.slot}" if task.slot else f"{name} on node {task.node[:12]}"
        lines = [f"task {which} ({task.image}) {task.state}: {task.error or task.message}"]
        if task.container_id:
            container = self.engine.state(task.container_id)
            if container is not None and container.last_probe:
                lines.append(f"last health probe: {container.last_probe}")
            tail = self.engine.logs_tail(task.container_id, defaults.FAILED_CONTAINER_LOG_LINES)
            if tail:
                lines.append(f"last {len(tail)} log lines of its container:")
                lines += [f"  {line}" for line in tail]
        return "\n".join(lines)

    def _fail(self, name: str, problem: str) -> NoReturn:
        for line in problem.splitlines():
            self.log(line)
        self._undo(exclude=name)
        raise HealthCheckFailed(problem)

    def _undo(self, exclude: str) -> None:
        """Put every other service of the stack back as it was before the deploy (see the module docstring)."""
        rolled: list[str] = []
        for name in sorted(s.service for s in self.plan.services):
            state = self.engine.service(self._full(name))
            if state is None:
                continue
            if name not in self.before:
                self.log(f"{name}: removing the service this deployment created")
                self.engine.remove_service(state.id)
                continue
            if name == exclude and state.update_state in UPDATE_STATES_FAILED:
                continue
            # `docker stack deploy` re-sends every service, so an unchanged one gets a new version but the same
            # spec; its update status may be an earlier release's `completed`: rolling it back would go back
            # past that release (and replace its tasks).
            changed = state.spec != self.before[name][0].spec
            if changed:
                self._rollback(name)
                rolled.append(name)
        deadline = time.monotonic() + max((s.rollback_bound for s in self.plan.services if s.service in rolled),
                                          default=0)
        busy = list(rolled)
        while busy and time.monotonic() < deadline:
            states = {n: self.engine.service(self._full(n)) for n in busy}
            busy = [n for n, s in states.items() if s is not None and s.update_state == "rollback_started"]
            if busy:
                time.sleep(CONVERGE_POLL_SECONDS)
        if busy:
            self.log(f"still rolling back after the wait: {', '.join(busy)}; Swarm goes on with it")
        elif rolled:
            self.log(f"rolled back: {', '.join(rolled)}")
        self._restore_pruned()

    def _restore_pruned(self) -> None:
        """Create again the services `--prune` removed, as they were: the previous release serves as a whole."""
        for name, spec in sorted(self.pruned.items()):
            if self.engine.service(self._full(name)) is not None:
                continue
            self.log(f"{name}: creating again the service this deployment's --prune removed")
            try:
                self.engine.create_service(spec)
            except docker.errors.DockerException as exc:
                self.log(f"{name}: could not create it again ({exc}); the previous release's stack file has it")

    def _rollback(self, name: str) -> None:
        argv = ["docker", "service", "rollback", "--detach", "--quiet", self._full(name)]
        self.log(f"{name}: rolling back to its previous spec: $ {' '.join(argv)}")
        env = {"DOCKER_HOST": self.docker_host} if self.docker_host else {}
        result = process.run(argv, env=env, inherit=DOCKER_ENV, log=self.log, timeout=UP_TIMEOUT_SECONDS)
        if not result.ok:
            self.log(f"{name}: could not roll back: {failure_message('docker service rollback', result)}")



class Swarm:
    """The release as a Swarm stack; a rollback runs the images the commit's earlier deployment built."""

    name = "swarm"
    release_steps: type[SwarmReleaseSteps] = SwarmReleaseSteps

    def plan(self, release: Release) -> ReleasePlan:
        """No plan: what Swarm replaces is decided by Swarm itself when the stack is deployed."""
        raise Conflict(f"app {release.app.name!r} uses strategy swarm: a plan covers the compose strategies "
                       "(rolling, recreate) only")

    def roll_out(self, release: Release) -> list[ServiceRecord]:
        return self._deploy(release, reuse_images=False)

    def roll_back(self, release: Release) -> list[ServiceRecord]:
        return self._deploy(release, reuse_images=True)

    def _deploy(self, release: Release, *, reuse_images: bool) -> list[ServiceRecord]:
        stack = deploy_stack(release.app, release.directory,
                             SwarmRelease(release.sha, release.deployment_id, reuse_images=reuse_images),
                             log=release.log, resolved=release.resolved)
        return stack_services(stack.images)

"""Rolling a built release out: a pure planner (`plan_rollout`) and the executor (`roll_out`).

Per service the planner decides, and says why: `unchanged`, `start` (no container yet), `rolling`
(new containers beside the old, health gate, drain, then stop the old) or `recreate` (compose
replaces the container in place: services that cannot or must not run twice).

The executor works in two phases so that rolling services switch all together or not at all:
  A. start/recreate what must be, start every rolling service's new containers and gate them;
     on any failure the new containers are removed and the old ones, never touched, keep serving;
  B. drain and remove the old containers, then the orphans (services no longer in the files).

Left-overs of an interrupted rollout (a worker killed mid-way leaves extra new containers) are
found with a record of the live container ids per app, `state_dir/rollout/<app>.json`, written
whenever the set of containers meant to serve changes; a worker given the Redis connection also
keeps a copy there, so a worker on another machine that deploys the app next (to the same engine)
knows it too, and the newer of the two is read. Before planning, a service's containers
that are not in that record are removed, but only while at least one recorded container of the
service is left, so a missing or stale record can never take a service down. Compose's own
container numbers and names cannot tell old from new: they are reused and bumped freely.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import redis

from hooksvc import defaults, keys
from hooksvc.config import AppConfig
from hooksvc.connection import call
from hooksvc.errors import (
    ComposeError,
    DeployError,
    EngineUnavailable,
    HealthCheckFailed,
    HooksvcError,
    RedisUnavailable,
)
from hooksvc.logs import LogFn
from hooksvc.release_steps import POST_DEPLOY, PRE_DEPLOY
from workers.compose import UP_TIMEOUT_SECONDS, ComposeProject, detect_compose
from workers.docker_engine import ContainerInfo, ContainerState, DockerEngine, is_connection_failure
from workers.images import release_id, tag_release_images
from workers.release_steps import ReleaseSteps

#: Per-service label choosing `rolling` or `recreate` against the planner's own judgement.
STRATEGY_LABEL = "hooksvc.strategy"
#: Label on a container: a shell command run inside it to make its healthcheck fail before it stops.
DRAIN_LABEL = "hooksvc.drain"
#: Label on a container: seconds to wait after draining, for proxies to notice and requests to end.
DRAIN_SECONDS_LABEL = "hooksvc.drain_seconds"
#: Directory under the worker's state_dir holding one JSON record of live containers per app.
STATE_SUBDIR = "rollout"
#: Health is polled this often. The deploy benchmark measured a 0.25 s poll adding ~0.2 s per deploy
#: (the gate saw "healthy" one poll late); one container inspect per 50 ms costs next to nothing.
HEALTH_POLL_SECONDS = 0.05
#: How long a rollout whose engine went away waits for it to come back, to remove what it started.
#: A restart takes the engine's start plus its containers' stop grace (10 s unless set).
ENGINE_RETURN_SECONDS = 90.0


class Action(StrEnum):
    UNCHANGED = "unchanged"
    START = "start"
    ROLLING = "rolling"
    RECREATE = "recreate"


@dataclass(frozen=True)
class ServicePlan:
    service: str
    action: Action
    reason: str
    #: Ids of the containers the service has now (the "old" ones of a rolling update).
    old: tuple[str, ...] = ()
    #: How many new containers a rolling update starts.
    replicas: int = 1


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


@dataclass(frozen=True)
class ServiceOutcome:
    service: str
    action: Action
    reason: str
    started: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolloutResult:
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


# ---- pure: reading a service's resolved compose config ---------------------------------------

def service_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """Labels as a dict, whether compose printed a mapping or a list of `key=value`."""
    labels = config.get("labels") or {}
    if isinstance(labels, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in labels.items()}
    result: dict[str, str] = {}
    for item in labels:
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


def fixed_host_ports(config: Mapping[str, Any]) -> list[str]:
    """Host ports a service publishes at a fixed number: a second container could not bind them.

    An ephemeral publication (`"80"`, `"127.0.0.1::80"`) or a host port range is not fixed.
    """
    fixed: list[str] = []
    for port in config.get("ports") or []:
        if isinstance(port, Mapping):
            published = str(port.get("published") or "")
        else:
            # v1 short syntax: [[host_ip:]published:]target[/proto]; host_ip may be "[::1]".
            parts = str(port).rsplit(":", 2)
            published = parts[-2] if len(parts) >= 2 else ""
        if published.isdigit():
            fixed.append(published)
    return fixed


def named_volumes(config: Mapping[str, Any]) -> list[str]:
    """Named volumes a service mounts (bind mounts, anonymous volumes and tmpfs are not)."""
    names: list[str] = []
    for volume in config.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                names.append(str(volume["source"]))
            continue
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0] and not parts[0].startswith(("/", ".", "~", "$")):
            names.append(parts[0])
    return names


def desired_replicas(config: Mapping[str, Any], running: int) -> int:
    """Replicas a service asks for (`deploy.replicas`, `scale`), else as many as run now, at least 1."""
    deploy = config.get("deploy") or {}
    for value in (deploy.get("replicas") if isinstance(deploy, Mapping) else None, config.get("scale")):
        if isinstance(value, int | str) and str(value).isdigit() and int(value) > 0:
            return int(value)
    return max(running, 1)


def dependencies(config: Mapping[str, Any]) -> list[str]:
    depends = config.get("depends_on") or []
    return [str(d) for d in depends]  # a list, or a mapping whose keys are the services


def reasons_not_to_run_twice(config: Mapping[str, Any]) -> list[str]:
    """Why a second container of this service cannot (or must not) run beside the first."""
    reasons = [f"publishes fixed host port {port}" for port in fixed_host_ports(config)]
    if config.get("container_name"):
        reasons.append(f"sets container_name {config['container_name']!r}")
    if str(config.get("network_mode") or "") == "host":
        reasons.append("uses network_mode: host")
    reasons += [f"mounts named volume {name!r}" for name in named_volumes(config)]
    return reasons


def dependency_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Service names, each after the services it depends on; ties in name order."""
    ordered: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in services:
            return
        if name in visiting:
            raise DeployError(f"services depend on each other in a cycle through {name!r}")
        visiting.add(name)
        for dep in sorted(dependencies(services[name])):
            visit(dep)
        visiting.discard(name)
        done.add(name)
        ordered.append(name)

    for name in sorted(services):
        visit(name)
    return ordered


def parse_go_duration(value: object) -> float | None:
    """Seconds from a compose duration (`10s`, `1m30s`, `500ms`, or a number); None if unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, pos, text = 0.0, 0, value.strip()
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


# ---- pure: the plan ---------------------------------------------------------------------------

def plan_rollout(
    services: Mapping[str, Mapping[str, Any]],
    config_hashes: Mapping[str, str],
    image_ids: Mapping[str, str | None],
    containers: Sequence[ContainerInfo],
    *,
    compose_major: int = 2,
) -> RolloutPlan:
    """Decide per service what the rollout does, and why.

    `services` is the resolved compose model's `services`, `config_hashes` what `config --hash=*`
    printed, `image_ids` the local image id each service will run (None when unknown), and
    `containers` the project's current containers. Changed means the config hash differs from a
    container's label, or the image differs from the container's: compose v2 leaves the image out
    of its hash, so a rebuilt image under the same tag only shows in the image id.
    """
    by_service: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        by_service.setdefault(container.service, []).append(container)
    plans: list[ServicePlan] = []
    for name in dependency_order(services):
        plans.append(_plan_service(name, services[name], config_hashes.get(name, ""),
                                   image_ids.get(name), by_service.get(name, []), compose_major))
    orphans = tuple(c for c in containers if c.service not in services)
    return RolloutPlan(services=tuple(plans), orphans=orphans)


def _plan_service(name: str, config: Mapping[str, Any], config_hash: str, image_id: str | None,
                  current: list[ContainerInfo], compose_major: int) -> ServicePlan:
    old = tuple(c.id for c in current)
    if not current:
        return ServicePlan(name, Action.START, "new service: no container yet")
    changes = _changes(config_hash, image_id, current, compose_major)
    running = sum(1 for c in current if c.running)
    if not changes:
        if running == 0:
            return ServicePlan(name, Action.RECREATE, "unchanged, but no container is running", old)
        return ServicePlan(name, Action.UNCHANGED, "config hash and image unchanged", old)
    changed = "; ".join(changes)
    replicas = desired_replicas(config, running)
    override = service_labels(config).get(STRATEGY_LABEL, "").strip().lower()
    blockers = reasons_not_to_run_twice(config)
    if override == "recreate":
        return ServicePlan(name, Action.RECREATE, f"{changed}; label {STRATEGY_LABEL}=recreate", old, replicas)
    if override == "rolling":
        why = f"; overrides: {', '.join(blockers)}" if blockers else ""
        return ServicePlan(name, Action.ROLLING, f"{changed}; label {STRATEGY_LABEL}=rolling{why}", old,
                           replicas)
    if override:
        raise DeployError(f"service {name}: label {STRATEGY_LABEL} must be 'rolling' or 'recreate', "
                          f"got {override!r}")
    if blockers:
        kind = "cannot" if len(blockers) > sum("named volume" in b for b in blockers) else "must not"
        return ServicePlan(name, Action.RECREATE,
                           f"{changed}; {kind} run twice: {', '.join(blockers)}", old, replicas)
    if running == 0:
        # Nothing serves, so there is nothing to keep up: a plain recreate is the honest action.
        return ServicePlan(name, Action.RECREATE, f"{changed}; no container is running", old, replicas)
    return ServicePlan(name, Action.ROLLING, changed, old, replicas)


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


# ---- the record of live containers ------------------------------------------------------------

def record_path(state_dir: Path, app: str) -> Path:
    return state_dir / STATE_SUBDIR / f"{app}.json"


def load_record(path: Path, project: str) -> dict[str, set[str]] | None:
    """Live container ids per service from the last rollout, or None when there is no usable record."""
    found = _parse_record(_read_text(path), project)
    return found[1] if found else None


def save_record(path: Path, app: str, project: str, live: Mapping[str, Iterable[str]]) -> str:
    """Write the record atomically (a worker killed mid-write must not leave half a file); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"app": app, "project": project, "updated": time.time(),
            "containers": {s: sorted(ids) for s, ids in sorted(live.items())}}
    text = json.dumps(data, indent=2) + "\n"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return text


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _parse_record(text: str | bytes | None, project: str) -> tuple[float, dict[str, set[str]]] | None:
    """(when it was written, live container ids per service), or None when it is no usable record."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("project") != project:
        return None
    containers = data.get("containers")
    if not isinstance(containers, dict):
        return None
    updated = data.get("updated")
    return (float(updated) if isinstance(updated, int | float) else 0.0,
            {str(s): {str(i) for i in ids} for s, ids in containers.items() if isinstance(ids, list)})


@dataclass
class LiveRecord:
    """The record of an app's live containers: a file in the worker's state_dir and, given a Redis
    connection, a copy there for workers on other machines. Redis being away costs the copy, never
    the rollout: the file is written first, and the newer of the two is read."""

    path: Path
    app: str
    shared: redis.Redis | None = None

    def __str__(self) -> str:
        return f"{self.path}" + (" or in Redis" if self.shared is not None else "")

    def load(self, project: str) -> dict[str, set[str]] | None:
        found = [r for r in (_parse_record(_read_text(self.path), project), self._load_shared(project)) if r]
        return max(found, key=lambda r: r[0])[1] if found else None

    def save(self, project: str, live: Mapping[str, Iterable[str]]) -> None:
        text = save_record(self.path, self.app, project, live)
        if self.shared is not None:
            with contextlib.suppress(RedisUnavailable):
                call(self.shared.set, keys.app_rollout_record(self.app), text)

    def _load_shared(self, project: str) -> tuple[float, dict[str, set[str]]] | None:
        if self.shared is None:
            return None
        try:
            return _parse_record(call(self.shared.get, keys.app_rollout_record(self.app)), project)
        except RedisUnavailable:
            return None


# ---- the executor -----------------------------------------------------------------------------

def roll_out(app: AppConfig, release_dir: Path, *, log: LogFn, state_dir: Path,
             shared: redis.Redis | None = None) -> RolloutResult:
    """Build the release in `release_dir` and roll it out with the app's strategy.

    `shared`: the Redis connection that keeps a copy of the record of live containers for workers
    on other machines (see the module docstring).

    Raises ComposeError (build or compose failed; with a failed build nothing is touched),
    HealthCheckFailed (a new container failed its gate; the old ones keep serving), ReleaseStepFailed
    (a `pre_deploy` step failed; nothing was rolled out), PostDeployFailed (a `post_deploy` step failed;
    the new release is live) or DeployError.
    """
    started = time.monotonic()
    if app.strategy not in ("rolling", "recreate"):
        raise DeployError(f"unknown strategy {app.strategy!r}: expected 'rolling' or 'recreate'")
    project = app.project or app.name
    command = detect_compose(log=log)
    compose = ComposeProject(command=command, project=project, directory=release_dir,
                             files=tuple(app.compose_files), docker_host=app.docker_host)
    log(f"rollout of {app.name}: project {project}, strategy {app.strategy}, "
        f"compose {command.variant} {command.version}" + (f", engine {app.docker_host}" if app.docker_host else ""))
    engine = DockerEngine.connect(app.docker_host)
    rollout = _Rollout(app, project, compose, engine, log, LiveRecord(record_path(state_dir, app.name), app.name,
                                                                      shared))
    try:
        steps = ReleaseSteps(app, log, compose=compose, engine=engine)
        model: Future[dict[str, Any]] = Future()
        if steps.configured:
            # A step naming an unknown service is refused before the build moves any image tag.
            model.set_result(compose.config(log))
            steps.check(model.result()["services"])
        else:
            # Nothing to refuse before the build: the model is read while the images build.
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose-config")
            model = pool.submit(compose.config, log)
            pool.shutdown(wait=False)  # the thread ends with the call; nothing waits for it here
        log("building images")
        try:
            compose.build(log)
            services = model.result()["services"]
            tag_release_images(compose, engine, services, release_id(release_dir), log)
            steps.run(PRE_DEPLOY, services)
            result = rollout.recreate_all() if app.strategy == "recreate" else rollout.rolling()
        except Exception as exc:
            if rollout.engine_lost(exc):
                rollout.recover_from_engine_outage(exc)
            # The build moved the project's image tags to the release that failed: anything that
            # starts containers from them later (an operator's `up -d`, a reboot, the next
            # deployment's recreate fallback) must find the live release there instead.
            rollout.put_back_tags()
            raise
        steps.run(POST_DEPLOY, services)
    finally:
        rollout.engine.close()
    seconds = time.monotonic() - started
    log(f"rollout of {app.name} done in {seconds:.1f}s")
    return dataclasses.replace(result, seconds=seconds)


@dataclass
class _Rollout:
    app: AppConfig
    project: str
    compose: ComposeProject
    engine: DockerEngine
    log: LogFn
    record: LiveRecord
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Set once the new containers passed the gate and the record names them as the live ones.
    switched: bool = False
    #: Set once a failure turned out to be the engine going away (see `engine_lost`).
    lost: bool = False

    def _result(self, outcomes: Sequence[ServiceOutcome], leftovers: Sequence[str] = (),
                orphans: Sequence[str] = ()) -> RolloutResult:
        live = self._live()
        self.record.save(self.project, live)
        return RolloutResult(
            app=self.app.name, project=self.project, strategy=self.app.strategy,
            compose=f"{self.compose.command.variant} {self.compose.command.version}",
            services=tuple(outcomes), live={s: tuple(ids) for s, ids in live.items()},
            leftovers_removed=tuple(leftovers), orphans_removed=tuple(orphans),
        )

    def _live(self, leaving: Iterable[str] = ()) -> dict[str, list[str]]:
        gone = set(leaving)
        live: dict[str, list[str]] = {}
        for c in self.engine.containers(self.project):
            if c.id not in gone:
                live.setdefault(c.service, []).append(c.id)
        return live

    # ---- strategy: recreate ----

    def recreate_all(self) -> RolloutResult:
        """`up -d --remove-orphans`, then the health gate on every container (brief downtime accepted)."""
        self.services = self.compose.config(self.log)["services"]
        before = {c.id for c in self.engine.containers(self.project)}
        self.compose.check(self.compose.up_all_argv(), log=self.log, timeout=UP_TIMEOUT_SECONDS,
                           what="compose up")
        outcomes: list[ServiceOutcome] = []
        for service in dependency_order(self.services):
            ids = [c.id for c in self.engine.containers(self.project, service)]
            self._gate(service, ids, allow_completed=True)
            started = tuple(i for i in ids if i not in before)
            outcomes.append(ServiceOutcome(service, Action.RECREATE, "strategy recreate", started))
        return self._result(outcomes)

    # ---- strategy: rolling ----

    def rolling(self) -> RolloutResult:
        # Two independent compose calls of ~0.1 s each: run side by side, they cost one.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="compose-config") as pool:
            model_call = pool.submit(self.compose.config, self.log)
            hashes_call = pool.submit(self.compose.config_hashes, self.log)
            model, hashes = model_call.result(), hashes_call.result()
        self.services = model["services"]
        image_ids = {name: self.engine.image_id(self.compose.image_name(name, cfg))
                     for name, cfg in self.services.items()}
        leftovers = self._remove_leftovers()
        containers = self.engine.containers(self.project)
        major = 2 if self.compose.command.variant == "v2" else 1
        plan = plan_rollout(self.services, hashes, image_ids, containers, compose_major=major)
        self.log("plan:")
        for line in plan.describe():
            self.log(f"  {line}")
        by_id = {c.id: c for c in containers}

        outcomes: dict[str, ServiceOutcome] = {}
        beside: dict[str, list[str]] = {}  # rolling service -> its new container ids (phase A)
        try:
            for step in plan.services:
                outcomes[step.service] = self._phase_a(step, beside)
        except Exception as exc:
            if self.engine_lost(exc):
                raise  # nothing can be removed now; roll_out cleans up once the engine is back
            # Whatever went wrong, no rolling service switches: the old containers were never touched.
            try:
                self._discard_new(beside)
                self.record.save(self.project, self._live())
            except Exception as cleanup:  # the original error is the one to report
                self.log(f"could not remove all new containers ({cleanup}); "
                         "the next rollout's left-over check will")
            raise

        old_rolling = [i for step in plan.services if step.service in beside for i in step.old]
        # From here on the new containers are the ones meant to serve; a worker killed while the
        # old ones drain leaves them to the next rollout's left-over check.
        self.record.save(self.project, self._live(leaving=old_rolling))
        self.switched = True
        for step in plan.services:
            if step.service in beside:
                olds = [by_id[i] for i in step.old if i in by_id]
                self.log(f"{step.service}: new containers healthy; retiring {len(olds)} old")
                self._drain_and_remove(olds)
                outcomes[step.service] = ServiceOutcome(step.service, step.action, step.reason,
                                                        tuple(beside[step.service]), step.old)
        orphans = [c.id for c in plan.orphans]
        if plan.orphans:
            self.log(f"removing {len(orphans)} orphan container(s) of services no longer in the compose files")
            self._drain_and_remove(list(plan.orphans))
        return self._result([outcomes[s.service] for s in plan.services], leftovers, orphans)

    def _phase_a(self, step: ServicePlan, beside: dict[str, list[str]]) -> ServiceOutcome:
        name = step.service
        if step.action is Action.UNCHANGED:
            self.log(f"{name}: unchanged ({step.reason})")
            return ServiceOutcome(name, step.action, step.reason)
        if step.action in (Action.START, Action.RECREATE):
            verb = "starting" if step.action is Action.START else "recreating"
            self.log(f"{name}: {verb} ({step.reason})")
            self.compose.check(self.compose.up_service_argv(name), log=self.log,
                               timeout=UP_TIMEOUT_SECONDS, what=f"compose up {name}")
            ids = [c.id for c in self.engine.containers(self.project, name)]
            self._gate(name, ids, allow_completed=True)
            return ServiceOutcome(name, step.action, step.reason,
                                  tuple(i for i in ids if i not in step.old),
                                  tuple(i for i in step.old if i not in ids))
        total = len(step.old) + step.replicas
        self.log(f"{name}: rolling update ({step.reason}): starting {step.replicas} new beside "
                 f"{len(step.old)} old")
        old = set(step.old)
        beside[name] = []
        try:
            self.compose.check(self.compose.scale_beside_argv(name, total), log=self.log,
                               timeout=UP_TIMEOUT_SECONDS, what=f"compose up --scale {name}={total}")
        finally:
            # Even a failed `up` can leave containers behind (e.g. Created, port already allocated).
            beside[name] = [c.id for c in self.engine.containers(self.project, name) if c.id not in old]
        if not beside[name]:
            raise ComposeError(f"compose up --scale {name}={total} started no new container of {name}")
        self._gate(name, beside[name], allow_completed=False)
        return ServiceOutcome(name, step.action, step.reason, tuple(beside[name]))

    # ---- health gate ----

    def _gate(self, service: str, ids: Sequence[str], *, allow_completed: bool) -> None:
        """Wait until every container is healthy (or, without a healthcheck, running for start_grace).

        Fails fast on `unhealthy`, exit, restart or disappearance; `allow_completed` accepts an exit
        with code 0 (a one-shot service). Raises HealthCheckFailed with the reason and the logs.
        """
        if not ids:
            return
        timeout, grace = self.app.health_timeout, self.app.start_grace
        self.log(f"{service}: waiting for {len(ids)} container(s) to be healthy (at most {timeout:.0f}s)")
        begin = time.monotonic()
        running_since: dict[str, float] = {}
        restarts: dict[str, int] = {}
        while True:
            now = time.monotonic()
            pending: list[ContainerState] = []
            for cid in ids:
                state = self.engine.state(cid)
                if state is None:
                    self._fail(service, cid, None, "disappeared")
                restarts.setdefault(cid, state.restart_count)
                problem = _gate_problem(state, restarts[cid], allow_completed)
                if problem:
                    self._fail(service, cid, state, problem)
                if state.health == "healthy" or (state.status == "exited" and allow_completed):
                    continue
                if state.health is None and state.status == "running":
                    if now - running_since.setdefault(cid, now) >= grace:
                        continue
                else:
                    running_since.pop(cid, None)
                pending.append(state)
            if not pending:
                self.log(f"{service}: healthy after {time.monotonic() - begin:.1f}s")
                return
            if now - begin > timeout:
                first = pending[0]
                self._fail(service, first.id, first,
                           f"not healthy within {timeout:.0f}s (status {first.status}, "
                           f"health {first.health or 'no healthcheck'})")
            time.sleep(HEALTH_POLL_SECONDS)

    def _fail(self, service: str, cid: str, state: ContainerState | None, problem: str) -> NoReturn:
        name = state.name if state else cid[:12]
        lines = [f"service {service}: new container {name} {problem}"]
        if state is not None and state.last_probe:
            lines.append(f"last health probe: {state.last_probe}")
        if state is not None and state.error:
            lines.append(f"engine error: {state.error}")
        tail = self.engine.logs_tail(cid, defaults.FAILED_CONTAINER_LOG_LINES)
        if tail:
            lines.append(f"last {len(tail)} log lines of {name}:")
            lines += [f"  {line}" for line in tail]
        message = "\n".join(lines)
        for line in lines:
            self.log(line)
        raise HealthCheckFailed(message)

    # ---- the engine going away ----

    def engine_lost(self, exc: BaseException) -> bool:
        """Whether a failure is (or came with) the engine going away, e.g. a restart.

        While an engine shuts down it stops every container, so to the health gate a restart looks
        like the new container failing; an engine that no longer takes new connections tells them apart.
        """
        self.lost = self.lost or is_connection_failure(exc) or not self.engine.answers()
        return self.lost

    def recover_from_engine_outage(self, exc: BaseException) -> NoReturn:
        """Wait (bounded) for the engine, then remove what this rollout started; raise EngineUnavailable.

        Containers the engine stopped come back by themselves when they have a restart policy, the
        new ones too: once the engine answers, the record of live containers says which to remove.
        """
        where = self.app.docker_host or "(the local engine)"
        cause = _first_line(exc)
        self.log(f"the Docker engine {where} does not answer ({cause}); waiting up to "
                 f"{ENGINE_RETURN_SECONDS:.0f}s for it to come back")
        if not self.engine.wait_until_answers(ENGINE_RETURN_SECONDS):
            raise EngineUnavailable(
                f"the Docker engine {where} went away during the rollout (the rollout saw: {cause}) and was "
                f"not back within {ENGINE_RETURN_SECONDS:.0f}s: check the engine, then deploy again (the next rollout "
                "removes the containers this one started)") from exc
        self.log(f"the Docker engine {where} answers again")
        # The old client's pooled connections died with the engine.
        self.engine.close()
        self.engine = DockerEngine.connect(self.app.docker_host)
        removed, running = [], -1
        try:
            removed = self._remove_leftovers() if self.app.strategy == "rolling" else []
            self.record.save(self.project, self._live())
            running = sum(1 for c in self.engine.containers(self.project) if c.running)
        except Exception as cleanup:  # noqa: BLE001 - the outage is the error to report
            self.log(f"could not remove the containers of this rollout ({_first_line(cleanup)}); "
                     "the next rollout's left-over check will")
        if self.switched:
            outcome = ("the new release had passed its health gate and serves; its old containers were "
                       "retired once the engine was back")
        else:
            self.put_back_tags()
            outcome = f"once it was back, {len(removed)} new container(s) were removed"
            if running > 0:
                outcome += f" and the live release runs again ({running} container(s))"
            elif running == 0:
                # The engine starts again only containers with a restart policy; hooksvc does not.
                outcome += ("; no container of the live release runs: its services have no restart policy "
                            "(give them `restart: unless-stopped`), so redeploy the live release now")
        raise EngineUnavailable(f"the Docker engine {where} went away during the rollout (the rollout saw: {cause}); "
                                f"{outcome}; deploy again") from exc

    # ---- image tags after a failure ----

    def put_back_tags(self) -> None:
        """Point every built service's image tag back at the image its live containers run.

        Best effort: a failure here is logged and never hides the error that ended the rollout.
        A service with no live container (new in this release) has no image to go back to.
        """
        try:
            services = self.services or self.compose.config(self.log)["services"]
            for service, config in sorted(services.items()):
                if "build" not in config:
                    continue  # a pulled image: the build did not move its tag
                tag = self.compose.image_name(service, config)
                live = {c.image_id for c in self.engine.containers(self.project, service)}
                if len(live) != 1:
                    if live:
                        self.log(f"{service}: live containers run {len(live)} images; tag {tag} left as it is")
                    continue
                (image,) = live
                if self.engine.image_id(tag) == image:
                    continue
                self.engine.tag(image, tag)
                self.log(f"{service}: image tag {tag} put back on the live release's image {image[:19]}")
        except Exception as exc:  # noqa: BLE001 - the rollout's own error is the one to report
            self.log(f"could not put the image tags back on the live release: {exc}")

    # ---- draining, discarding, left-overs ----

    def _stop_grace(self, service: str) -> float:
        config = self.services.get(service) or {}
        grace = parse_go_duration(config.get("stop_grace_period"))
        return grace if grace is not None else defaults.STOP_GRACE_SECONDS

    def _drain_and_remove(self, containers: Sequence[ContainerInfo]) -> None:
        """Drain (drain command, wait until no longer healthy, wait drain_seconds), stop, remove.

        The drain command comes from the container's own labels: the release it runs knows how to
        take itself out of rotation, the new one may not.
        """
        waits_for_unhealthy: list[tuple[ContainerInfo, float]] = []
        pause = 0.0
        for c in containers:
            state = self.engine.state(c.id)
            if state is None:
                continue
            command = c.labels.get(DRAIN_LABEL, "").strip()
            seconds = self._drain_seconds(c)
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
                self.log(f"{c.service}: {c.name} has no {DRAIN_LABEL} label: no drain command; stopping it "
                         f"after the pause")
                continue
            self.log(f"{c.service}: draining {c.name}: sh -c {command!r}")
            done = self.engine.exec(c.id, ["sh", "-c", command])
            for line in done.output.splitlines():
                self.log(f"  {line}")
            if done.timed_out:
                self.log(f"{c.service}: drain command of {c.name} still running; going on")
            elif done.exit_code != 0:
                self.log(f"{c.service}: drain command of {c.name} exited {done.exit_code}; going on")
            pause = max(pause, seconds)
            if state.health == "healthy":
                waits_for_unhealthy.append((c, state.unhealthy_within))
        self._wait_until_not_healthy(waits_for_unhealthy)
        if pause > 0:
            self.log(f"waiting {pause:g}s for proxies to stop routing and requests to finish")
            time.sleep(pause)
        for c in containers:
            grace = self._stop_grace(c.service)
            self.log(f"{c.service}: stopping {c.name} (grace {grace:g}s) and removing it")
            self.engine.stop(c.id, grace)
            self.engine.remove(c.id)

    def _drain_seconds(self, c: ContainerInfo) -> float:
        raw = c.labels.get(DRAIN_SECONDS_LABEL)
        if raw is None:
            return defaults.DRAIN_SECONDS
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value < 0:
            self.log(f"{c.service}: label {DRAIN_SECONDS_LABEL}={raw!r} is not a number of seconds; "
                     f"using {defaults.DRAIN_SECONDS:g}")
            return defaults.DRAIN_SECONDS
        return value

    def _wait_until_not_healthy(self, waits: Sequence[tuple[ContainerInfo, float]]) -> None:
        """A health-aware proxy routes by health: wait until the drained containers report it."""
        if not waits:
            return
        begin = time.monotonic()
        deadline = begin + min(self.app.health_timeout, max(bound for _, bound in waits))
        remaining = dict(waits)
        while remaining and time.monotonic() < deadline:
            for c in list(remaining):
                state = self.engine.state(c.id)
                if state is None or state.health != "healthy":
                    del remaining[c]
            if remaining:
                time.sleep(HEALTH_POLL_SECONDS)
        if remaining:
            names = ", ".join(c.name for c in remaining)
            self.log(f"still healthy after the drain command: {names}; the drain may not affect health")
        else:
            self.log(f"drained containers report unhealthy after {time.monotonic() - begin:.1f}s")

    def _discard_new(self, beside: Mapping[str, Sequence[str]]) -> None:
        """Remove the new containers of a failed rollout; healthy ones may already get traffic: drain."""
        for service, ids in beside.items():
            if not ids:
                continue
            self.log(f"{service}: removing {len(ids)} new container(s); the old ones keep serving")
            news = [c for c in self.engine.containers(self.project, service) if c.id in set(ids)]
            self._drain_and_remove(news)

    def _remove_leftovers(self) -> list[str]:
        """Remove containers an interrupted rollout left behind (see the module docstring)."""
        record = self.record.load(self.project)
        if record is None:
            self.log(f"no record of live containers at {self.record}: skipping the left-over check")
            return []
        known = set().union(*record.values()) if record else set()
        removed: list[str] = []
        by_service: dict[str, list[ContainerInfo]] = {}
        for c in self.engine.containers(self.project):
            by_service.setdefault(c.service, []).append(c)
        for service, current in sorted(by_service.items()):
            unknown = [c for c in current if c.id not in known]
            if not unknown:
                continue
            if len(unknown) == len(current):
                self.log(f"{service}: none of its {len(current)} container(s) is in the record of the last "
                         "rollout; keeping them")
                continue
            names = ", ".join(c.name for c in unknown)
            self.log(f"{service}: removing {len(unknown)} left-over container(s) of an interrupted "
                     f"rollout: {names}")
            self._drain_and_remove(unknown)
            removed += [c.id for c in unknown]
        return removed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, HooksvcError) else f"{type(exc).__name__}: {first}"


def _gate_problem(state: ContainerState, restarts_at_start: int, allow_completed: bool) -> str | None:
    if state.health == "unhealthy":
        return "became unhealthy"
    if state.status in ("exited", "dead"):
        if state.status == "exited" and state.exit_code == 0 and allow_completed:
            return None
        return f"exited with code {state.exit_code}"
    if state.restart_count > restarts_at_start or state.status == "restarting":
        return f"is restarting (restart count {state.restart_count})"
    if state.status == "created" and state.error:
        return "could not start"
    return None

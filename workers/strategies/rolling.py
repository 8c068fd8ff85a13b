"""Strategy `rolling` (the default): new containers beside the old, health gate, drain, then the old ones stop.

The pure planner (`workers.rollout.planner`) decides per service; the rollout then works in two
phases so that rolling services switch all together or not at all:
  A. start/recreate what must be, start every rolling service's new containers and gate them;
     on any failure the new containers are removed and the old ones, never touched, keep serving;
  B. drain and remove the old containers, then the orphans (services no longer in the files).

Before planning, a service's containers that are not in the record of live containers
(`workers.rollout.live_record`) are removed, but only while at least one recorded container of the
service is left, so a missing or stale record can never take a service down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from hooksvc.errors import ComposeError
from workers import cancellation
from workers.compose import UP_TIMEOUT_SECONDS
from workers.rollout.context import Rollout, RolloutResult, ServiceOutcome
from workers.rollout.drain import drain_and_remove
from workers.rollout.gate import wait_until_healthy
from workers.rollout.outage import engine_lost
from workers.rollout.planner import ContainerInfo, ServiceAction, ServicePlan, plan_rollout
from workers.strategies.base import ComposeStrategy


class Rolling(ComposeStrategy):
    """No downtime for the services that can run twice; the others are recreated in place."""

    name = "rolling"

    def apply(self, rollout: Rollout) -> RolloutResult:
        if rollout.services and rollout.hashes is not None:
            # The conductor read both before the strategy ran (the hashes while the images built).
            hashes = dict(rollout.hashes)
        else:
            # Two independent compose calls of ~0.1 s each: run side by side, they cost one.
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="compose-config") as pool:
                model_call = pool.submit(rollout.compose.config, rollout.log)
                hashes_call = pool.submit(rollout.compose.config_hashes, rollout.log)
                model, hashes = model_call.result(), hashes_call.result()
            rollout.services = model["services"]
        image_ids = {name: rollout.engine.image_id(rollout.compose.image_name(name, cfg))
                     for name, cfg in rollout.services.items()}
        leftovers = self.remove_leftovers(rollout)
        containers = rollout.engine.containers(rollout.project)
        major = 2 if rollout.compose.command.variant == "v2" else 1
        plan = plan_rollout(rollout.services, hashes, image_ids, containers, compose_major=major, force=rollout.force)
        rollout.log("plan:")
        for line in plan.describe():
            rollout.log(f"  {line}")
        by_id = {c.id: c for c in containers}

        outcomes: dict[str, ServiceOutcome] = {}
        beside: dict[str, list[str]] = {}  # rolling service -> its new container ids (phase A)
        try:
            for step in plan.services:
                outcomes[step.service] = _phase_a(rollout, step, beside)
            # The last moment an operator's cancel is honoured: it takes the path of a failed gate.
            cancellation.active().past_return("the new containers had passed the health gate and were replacing "
                                              "the old ones")
        except Exception as exc:
            if engine_lost(rollout, exc):
                raise  # nothing can be removed now; the conductor cleans up once the engine is back
            # Whatever went wrong, no rolling service switches: the old containers were never touched.
            try:
                _discard_new(rollout, beside)
                rollout.record.save(rollout.project, rollout.live())
            except Exception as cleanup:  # the original error is the one to report
                rollout.log(f"could not remove all new containers ({cleanup}); "
                            "the next rollout's left-over check will")
            raise

        old_rolling = [i for step in plan.services if step.service in beside for i in step.old]
        # From here on the new containers are the ones meant to serve; a worker killed while the
        # old ones drain leaves them to the next rollout's left-over check.
        rollout.record.save(rollout.project, rollout.live(leaving=old_rolling))
        rollout.switched = True
        for step in plan.services:
            if step.service in beside:
                olds = [by_id[i] for i in step.old if i in by_id]
                rollout.log(f"{step.service}: new containers healthy; retiring {len(olds)} old")
                drain_and_remove(rollout, olds, defer_removal=rollout.defer_removal)
                outcomes[step.service] = ServiceOutcome(step.service, step.action, step.reason,
                                                        tuple(beside[step.service]), step.old)
        orphans = [c.id for c in plan.orphans]
        if plan.orphans:
            rollout.log(f"removing {len(orphans)} orphan container(s) of services no longer in the compose files")
            drain_and_remove(rollout, list(plan.orphans), defer_removal=rollout.defer_removal)
        return rollout.result([outcomes[s.service] for s in plan.services], leftovers, orphans)

    def remove_leftovers(self, rollout: Rollout) -> list[str]:
        """Remove containers an interrupted rollout left behind (see the module docstring)."""
        record = rollout.record.load(rollout.project)
        if record is None:
            rollout.log(f"no record of live containers at {rollout.record}: skipping the left-over check")
            return []
        known = set().union(*record.values()) if record else set()
        removed: list[str] = []
        by_service: dict[str, list[ContainerInfo]] = {}
        for c in rollout.engine.containers(rollout.project):
            by_service.setdefault(c.service, []).append(c)
        for service, current in sorted(by_service.items()):
            unknown = [c for c in current if c.id not in known]
            if not unknown:
                continue
            if len(unknown) == len(current):
                rollout.log(f"{service}: none of its {len(current)} container(s) is in the record of the last "
                            "rollout; keeping them")
                continue
            names = ", ".join(c.name for c in unknown)
            rollout.log(f"{service}: removing {len(unknown)} left-over container(s) of an interrupted "
                        f"rollout: {names}")
            drain_and_remove(rollout, unknown)
            removed += [c.id for c in unknown]
        return removed


def _phase_a(rollout: Rollout, step: ServicePlan, beside: dict[str, list[str]]) -> ServiceOutcome:
    name = step.service
    if step.action is ServiceAction.UNCHANGED:
        rollout.log(f"{name}: unchanged ({step.reason})")
        return ServiceOutcome(name, step.action, step.reason)
    if step.action in (ServiceAction.START, ServiceAction.RECREATE):
        verb = "starting" if step.action is ServiceAction.START else "recreating"
        rollout.log(f"{name}: {verb} ({step.reason})")
        rollout.compose.check(rollout.compose.up_service_argv(name, force=step.forced), log=rollout.log,
                              timeout=UP_TIMEOUT_SECONDS, what=f"compose up {name}")
        ids = [c.id for c in rollout.engine.containers(rollout.project, name)]
        wait_until_healthy(rollout, name, ids, allow_completed=True)
        return ServiceOutcome(name, step.action, step.reason,
                              tuple(i for i in ids if i not in step.old),
                              tuple(i for i in step.old if i not in ids))
    total = len(step.old) + step.replicas
    rollout.log(f"{name}: rolling update ({step.reason}): starting {step.replicas} new beside "
                f"{len(step.old)} old")
    old = set(step.old)
    beside[name] = []
    try:
        rollout.compose.check(rollout.compose.scale_beside_argv(name, total), log=rollout.log,
                              timeout=UP_TIMEOUT_SECONDS, what=f"compose up --scale {name}={total}")
    finally:
        # Even a failed `up` can leave containers behind (e.g. Created, port already allocated).
        beside[name] = [c.id for c in rollout.engine.containers(rollout.project, name) if c.id not in old]
    if not beside[name]:
        raise ComposeError(f"compose up --scale {name}={total} started no new container of {name}")
    wait_until_healthy(rollout, name, beside[name], allow_completed=False)
    return ServiceOutcome(name, step.action, step.reason, tuple(beside[name]))


def _discard_new(rollout: Rollout, beside: Mapping[str, Sequence[str]]) -> None:
    """Remove the new containers of a failed rollout; healthy ones may already get traffic: drain."""
    for service, ids in beside.items():
        if not ids:
            continue
        rollout.log(f"{service}: removing {len(ids)} new container(s); the old ones keep serving")
        news = [c for c in rollout.engine.containers(rollout.project, service) if c.id in set(ids)]
        drain_and_remove(rollout, news)

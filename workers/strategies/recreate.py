"""Strategy `recreate`: `compose up -d --remove-orphans`, then the health gate on every container.

Compose replaces each changed container in place, so a changed service is down between its old
container's stop and its new one's start: the brief downtime is accepted.
"""

from __future__ import annotations

from workers import cancellation
from workers.compose import UP_TIMEOUT_SECONDS
from workers.rollout.context import Rollout, RolloutResult, ServiceOutcome
from workers.rollout.gate import wait_until_healthy
from workers.rollout.model import dependency_order
from workers.rollout.planner import ServiceAction
from workers.strategies.base import ComposeStrategy


class Recreate(ComposeStrategy):
    """Every changed container replaced in place, all at once."""

    name = "recreate"

    def planned_action(self, action: ServiceAction) -> ServiceAction:
        """Every change is replaced in place: what the planner would roll is recreated here."""
        return ServiceAction.RECREATE if action is ServiceAction.ROLLING else action

    def apply(self, rollout: Rollout) -> RolloutResult:
        """`up -d --remove-orphans`, then the health gate on every container (brief downtime accepted)."""
        if not rollout.services:  # the conductor hands over the model it read before the build
            rollout.services = rollout.compose.config(rollout.log)["services"]
        before = {c.id for c in rollout.engine.containers(rollout.project)}
        cancellation.active().past_return("strategy recreate had started replacing the containers")
        rollout.compose.check(rollout.compose.up_all_argv(force=rollout.force), log=rollout.log,
                              timeout=UP_TIMEOUT_SECONDS, what="compose up")
        outcomes: list[ServiceOutcome] = []
        for service in dependency_order(rollout.services):
            ids = [c.id for c in rollout.engine.containers(rollout.project, service)]
            wait_until_healthy(rollout, service, ids, allow_completed=True)
            started = tuple(i for i in ids if i not in before)
            outcomes.append(ServiceOutcome(service, ServiceAction.RECREATE, "strategy recreate", started))
        return rollout.result(outcomes)

    def remove_leftovers(self, rollout: Rollout) -> list[str]:
        """None: compose replaced containers in place, it started none beside the live ones."""
        return []

"""The check run's status and conclusion for each deployment state (workers/check_runs.py)."""

from __future__ import annotations

import pytest

from hooksvc.deployments import DeploymentState
from workers.check_runs import run_state


@pytest.mark.parametrize("state", list(DeploymentState))
def test_every_state_has_a_status(state: DeploymentState) -> None:
    """Each state a deployment can be in maps to a check run status; only final states conclude."""
    status, conclusion = run_state(state)
    assert status in ("queued", "in_progress", "completed")
    assert (conclusion is not None) == state.is_final


@pytest.mark.parametrize("state", [DeploymentState.HELD, DeploymentState.WAITING_FOR_CHECKS])
def test_a_held_or_gated_deployment_is_queued(state: DeploymentState) -> None:
    """A deployment a lock holds, or one waiting for its CI checks, shows as a queued run."""
    assert run_state(state) == ("queued", None)


def test_a_push_its_checks_kept_back_fails_never_neutral() -> None:
    """Skipped because a required check failed: the run fails, like the commit status; a plain skip is neutral."""
    assert run_state(DeploymentState.SKIPPED, checks_failed=True) == ("completed", "failure")
    assert run_state(DeploymentState.SKIPPED) == ("completed", "neutral")

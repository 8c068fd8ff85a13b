"""Asking a worker for a plan when none answers (real answers: tests/hooksvc/runtime/test_operator_actions.py)."""

from __future__ import annotations

import pytest
import redis as redis_lib

from hooksvc.errors import GatewayTimeout
from hooksvc.plans import plan_queue, request_plan


def test_no_worker_answering_is_a_gateway_timeout_naming_the_worker(redis: redis_lib.Redis) -> None:
    """Without a worker the request gives up after its wait, says what to check, and cancels the job."""
    with pytest.raises(GatewayTimeout, match="no worker answered the plan of shop within 1 s: is a `hooksvc worker`"):
        request_plan(redis, "shop", "", wait=1.0)
    assert plan_queue(redis).job_ids == []

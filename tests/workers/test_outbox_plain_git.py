"""A plain git host has no API: its apps' deployments put status events in the outbox like any other's,
and the sender clears them without a request, a failure count or a log line."""

from __future__ import annotations

from pathlib import Path

import redis as redis_lib

from hooksvc import keys
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.outbox import write_events
from hooksvc.store import DeploymentStore
from tests.helpers.config import PLAIN_GIT_APP, make_config
from tests.helpers.outbox import OUTBOX_COUNTERS, outbox_backlog
from tests.helpers.payloads import commit_sha
from workers.outbox_sender import OutboxSender


def test_statuses_of_a_plain_git_app_are_cleared_without_a_request(tmp_path: Path, redis: redis_lib.Redis) -> None:
    """Queued, running and succeeded leave nothing in the outbox, no counter and no `report:` log line."""
    config = make_config(tmp_path, PLAIN_GIT_APP, env={"SITE_SECRET": "s"})
    store = DeploymentStore(redis, listeners=[write_events])
    dep = store.intake.submit([NewDeployment("site", commit_sha(3), "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, previous_sha="")
    store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=commit_sha(3))
    assert outbox_backlog(redis) > 0  # the events were written: the sender decides there is nothing to send

    assert OutboxSender(config, redis, http_timeout=0.25).run_once() == 0

    assert outbox_backlog(redis) == 0 and redis.keys(f"{keys.OUTBOX_PREFIX}:*") == []
    assert all(redis.hgetall(key) == {} for key in OUTBOX_COUNTERS)
    lines, _ = store.logs.read(dep.id)
    assert not [line for line in lines if line.startswith("report:")]

"""`hooksvc lock`, `unlock`, `redeploy` and `status` on a real Redis: what they print and record."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import app_locks, audit
from hooksvc.cli import CLI_ADDRESS, local_admin, main
from tests.helpers.config import TEST_REDIS_URL, write_config


@pytest.fixture
def config_path(tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> Path:
    """App shop with a weekend freeze window in Berlin, on the test Redis."""
    monkeypatch.setenv("SHOP_SECRET", "shop-webhook-secret")
    return write_config(tmp_path, TEST_REDIS_URL, extra='freeze = ["Fri 16:00 - Mon 08:00"]\n'
                                                       'timezone = "Europe/Berlin"\n')


def test_lock_status_unlock(config_path: Path, redis: redis_lib.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    """lock prints and records who and why, status lists the lock and the window, unlock lifts it; both audited."""
    assert main(["--config", str(config_path), "lock", "shop", "--reason", "database migration"]) == 0
    assert f"shop locked by {local_admin().name}: database migration" in capsys.readouterr().out
    lock = app_locks.read_lock(redis, "shop")
    assert lock is not None and lock.by == local_admin().name
    assert main(["--config", str(config_path), "status"]) == 0
    out = capsys.readouterr().out
    assert f"lock: {local_admin().name}: database migration" in out
    assert "freeze window Fri 16:00 - Mon 08:00 (Europe/Berlin)" in out
    assert main(["--config", str(config_path), "unlock", "shop"]) == 0
    assert "shop unlocked" in capsys.readouterr().out
    assert app_locks.read_lock(redis, "shop") is None
    assert [(e.action, e.operator, e.address) for e in audit.recent(redis, app="shop")] == [
        ("unlock", local_admin().name, CLI_ADDRESS), ("lock", local_admin().name, CLI_ADDRESS)]


def test_lock_without_reason_and_redeploy_without_live_release_fail_clearly(
    config_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A blank reason and a redeploy of an app with nothing live exit 1 with what to do."""
    assert main(["--config", str(config_path), "lock", "shop", "--reason", " "]) == 1
    assert "a lock needs a 'reason'" in capsys.readouterr().err
    assert main(["--config", str(config_path), "redeploy", "shop"]) == 1
    assert "has no live release to redeploy: deploy it first" in capsys.readouterr().err


def test_cancel_ends_a_queued_deployment_and_asks_a_running_one(
    config_path: Path, redis: redis_lib.Redis, capsys: pytest.CaptureFixture[str],
) -> None:
    """`hooksvc cancel ID` ends a queued deployment; of a running one it records the request (still
    running, audited `requested`); of an ended one it exits 1 saying why."""
    from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
    from hooksvc.store import DeploymentStore

    store = DeploymentStore(redis)
    queued = store.intake.submit([NewDeployment("shop", "a" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    assert main(["--config", str(config_path), "cancel", queued.id]) == 0
    assert f"deployment {queued.id} of shop cancelled" in capsys.readouterr().out
    assert store.get(queued.id).state is DeploymentState.CANCELLED

    running = store.intake.submit([NewDeployment("shop", "b" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(running.id, "")
    assert main(["--config", str(config_path), "cancel", running.id]) == 0
    assert f"cancel requested by {local_admin().name}" in capsys.readouterr().out
    assert store.get(running.id).state is DeploymentState.RUNNING
    assert store.cancel_requester(running.id) == local_admin().name
    assert main(["--config", str(config_path), "cancel", queued.id]) == 1
    assert "is cancelled, only a queued, waiting or running one can be cancelled" in capsys.readouterr().err
    assert [(e.action, e.result, e.deployment, e.app) for e in audit.recent(redis)] == [
        ("cancel", audit.FAILED, queued.id, None), ("cancel", audit.REQUESTED, running.id, "shop"),
        ("cancel", audit.OK, queued.id, "shop")]

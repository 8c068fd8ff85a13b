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

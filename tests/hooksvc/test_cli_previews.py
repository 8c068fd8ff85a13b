"""`hooksvc previews APP [--remove N]` on a real Redis: what it lists, queues and records."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import audit, keys
from hooksvc.cli import CLI_ADDRESS, local_admin, main
from hooksvc.deployments import Trigger
from hooksvc.preview_records import LIVE, PreviewRecord, PreviewRecords
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL, write_config

PREVIEWS = '\n[apps.shop.previews]\nurl = "http://127.0.0.1:{port}/"\nports = "9100-9199"\n'


@pytest.fixture
def config_path(tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> Path:
    """App shop with previews on host ports, on the test Redis."""
    monkeypatch.setenv("SHOP_SECRET", "shop-webhook-secret")
    return write_config(tmp_path, TEST_REDIS_URL, extra=PREVIEWS)


def test_list_and_remove(config_path: Path, redis: redis_lib.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    """The list shows each preview's number, state, sha and URL; --remove queues its teardown, audited."""
    assert main(["--config", str(config_path), "previews", "shop"]) == 0
    assert "shop: no previews" in capsys.readouterr().out
    PreviewRecords(redis).put(PreviewRecord(app="shop", number=4, sha="d" * 40, url="http://127.0.0.1:9100/",
                                            state=LIVE, updated_at=0.0, port=9100))
    assert main(["--config", str(config_path), "previews", "shop"]) == 0
    assert "#4  live       dddddddddddd  http://127.0.0.1:9100/" in capsys.readouterr().out
    assert main(["--config", str(config_path), "previews", "shop", "--remove", "4"]) == 0
    assert "teardown" not in capsys.readouterr().err
    queued = DeploymentStore(redis).get(redis.get(keys.app_queued("shop", 4)).decode())
    assert (queued.trigger, queued.preview, queued.operator) == (Trigger.TEARDOWN, 4, local_admin().name)
    entry = audit.recent(redis, app="shop", limit=1)[0]
    assert (entry.action, entry.address) == (audit.REMOVE_PREVIEW, CLI_ADDRESS)


def test_removing_an_unknown_preview_fails_clearly(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--remove of a PR without a preview exits 1 naming it."""
    assert main(["--config", str(config_path), "previews", "shop", "--remove", "9"]) == 1
    assert "has no preview of pull request #9" in capsys.readouterr().err

"""What an app's services run, as the worker records it and `hooksvc status`, the API and the dashboard show it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.config import Config
from hooksvc.live_services import (
    ServiceRecord,
    compose_services,
    read_services,
    record_services,
    stack_services,
)
from hooksvc.operations import app_overview
from hooksvc.store import DeploymentStore
from tests.helpers.config import write_config

BEARER = {"Authorization": "Bearer operator-token-1"}


def test_nothing_is_recorded_before_a_release_goes_live(redis: redis_lib.Redis) -> None:
    assert read_services(redis, "shop") is None


def test_a_record_reads_back_and_the_next_replaces_it(redis: redis_lib.Redis) -> None:
    record_services(redis, "shop", "3", stack_services({"web": "reg:5000/shop/web:abc-3", "db": "db:1"}), 100.0)
    record_services(redis, "shop", "4", compose_services({"web": ["a" * 64, "b" * 64]}), 200.0)
    running = read_services(redis, "shop")
    assert running is not None
    assert (running.deployment_id, running.recorded_at) == ("4", 200.0)
    assert running.services == (ServiceRecord("web", f"2 container(s): {'a' * 12}, {'b' * 12}"),)


def test_stack_services_are_listed_by_name_with_their_image() -> None:
    assert stack_services({"web": "r/web:1", "api": "r/api:1"}) == [
        ServiceRecord("api", "r/api:1"), ServiceRecord("web", "r/web:1")]


def test_the_api_and_the_dashboard_show_them(client: FlaskClient, redis: redis_lib.Redis) -> None:
    record_services(redis, "shop", "12", stack_services({"web": "reg:5000/shop/web:0123456789ab-12"}), time.time())
    apps = {a["name"]: a for a in client.get("/api/apps", headers=BEARER).json["apps"]}
    assert apps["shop"]["services"]["deployment_id"] == "12"
    assert apps["shop"]["services"]["services"] == [{"name": "web", "runs": "reg:5000/shop/web:0123456789ab-12"}]
    assert apps["blog"]["services"] is None
    page = client.get("/", headers=BEARER).get_data(as_text=True)
    assert "reg:5000/shop/web:0123456789ab-12" in page and 'title="since #12"' in page


def test_status_of_an_app_lists_them(tmp_path: Path, redis: redis_lib.Redis, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url=redis_url)
    record_services(redis, "shop", "7", compose_services({"web": ["c" * 64], "db": ["d" * 64]}), time.time())
    result = subprocess.run([sys.executable, "-m", "hooksvc.cli", "--config", str(config), "status", "shop"],
                            env={**os.environ, "SHOP_SECRET": "s"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "services since deployment 7" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["db", "1", "container(s):", "d" * 12] in rows and ["web", "1", "container(s):", "c" * 12] in rows


def test_the_overview_is_a_frozen_record_with_the_services(config: Config, store: DeploymentStore,
                                                          redis: redis_lib.Redis) -> None:
    """`app_overview` hands each layer a typed record it cannot edit; the API's document carries the services."""
    record_services(redis, "shop", "5", compose_services({"web": ["e" * 64]}), 300.0)
    shop = config.app("shop")
    assert shop is not None
    overview = app_overview(store, shop)
    assert overview.services is not None and overview.services.deployment_id == "5"
    assert (overview.last_deployment, overview.state, overview.queued_deployment) == (None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        overview.state = "running"  # type: ignore[misc]
    web = {"name": "web", "runs": f"1 container(s): {'e' * 12}"}
    assert overview.to_json()["services"] == {"deployment_id": "5", "recorded_at": 300.0, "services": [web]}

"""What an app's services run, as the worker records it and `hooksvc status`, the API and the dashboard show it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.running import (
    ServiceRecord,
    compose_services,
    read_services,
    record_services,
    stack_services,
)
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

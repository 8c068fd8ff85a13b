"""Shared fixtures: a real Redis (flushed before and after each test), a config, the web app and
its client, a store. Helpers that tests call themselves live in tests/helpers/, never here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings

from hooksvc.config import Config
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL, make_config
from tests.helpers.redis_server import RedisServer

pytest_plugins = ["tests.fixtures.git", "tests.fixtures.docker", "tests.fixtures.engines", "tests.fixtures.swarm",
                  "tests.fixtures.machine"]

# CI runs the same examples every time (a red CI is then reproducible, not luck) and has no time
# limit per example (a loaded 2-CPU machine is slow); developers' runs explore new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Session fixtures there can be only one of on a machine (the engine's swarm, the second dockerd's
#: bridge and address pool): under pytest-xdist, the tests that use one all run on the same worker.
ONE_PER_MACHINE = ("swarm", "second_engine")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in ONE_PER_MACHINE:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def redis(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A real Redis connection on the test database, flushed before and after the test."""
    conn = redis_lib.Redis.from_url(redis_url)
    try:
        conn.ping()
    except redis_lib.ConnectionError:
        pytest.fail(f"the tests need a running redis-server at {redis_url} (scripts/test starts one)")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def app(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    """The web app for `make_config`'s apps on the test Redis, without store listeners."""
    return create_app(make_config(tmp_path), connection=redis, listeners=[])


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(redis: redis_lib.Redis) -> DeploymentStore:
    return DeploymentStore(redis)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (append-only file in `tmp_path`), which it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()

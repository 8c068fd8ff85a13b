"""Shared fixtures: a real Redis (flushed before and after each test) and config builders."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings

from hooksvc import create_app
from hooksvc.config import Config, parse_config
from hooksvc.store import DeploymentStore

pytest_plugins = ["tests.integration.git_fixtures", "tests.docker_fixtures"]

# CI runs the same examples every time (a red CI is then reproducible, not luck) and has no time
# limit per example (a loaded 2-CPU machine is slow); developers' runs explore new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Tests use their own database so a developer's data in db 0 is never flushed.
TEST_REDIS_URL = os.environ.get("HOOKSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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


def make_config(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None, **server: str) -> Config:
    """A valid config with a GitHub, a Gitea and a GitLab app, plus whatever `extra` TOML adds."""
    environ = {
        "HOOKSVC_API_TOKENS": "op-token-1,op-token-2",
        "SHOP_SECRET": "shop-webhook-secret",
        "BLOG_SECRET": "blog-webhook-secret",
        "WIKI_SECRET": "wiki-webhook-secret",
        "GH_TOKEN": "gh-api-token",
        "REDIS_URL": TEST_REDIS_URL,
        **(env or {}),
    }
    server_lines = "\n".join(f"{k} = {v}" for k, v in server.items())
    text = textwrap.dedent(f"""
        [server]
        public_url = "http://deploy.test"
        {server_lines}

        [worker]
        state_dir = "{tmp_path / 'state'}"

        [hosts.github]
        kind = "github"
        api_url = "http://127.0.0.1:9/github"
        token_env = "GH_TOKEN"

        [hosts.gitea]
        kind = "gitea"
        api_url = "http://127.0.0.1:9/gitea"
        token_env = "GH_TOKEN"

        [hosts.gitlab]
        kind = "gitlab"
        api_url = "http://127.0.0.1:9/gitlab"
        token_env = "GH_TOKEN"

        [apps.shop]
        host = "github"
        repo = "acme/shop"
        clone_url = "{tmp_path / 'origin-shop.git'}"
        branch = "main"
        secret_env = "SHOP_SECRET"

        [apps.blog]
        host = "gitea"
        repo = "acme/blog"
        clone_url = "{tmp_path / 'origin-blog.git'}"
        tags = "v*"
        secret_env = "BLOG_SECRET"

        [apps.wiki]
        host = "gitlab"
        repo = "acme/wiki"
        clone_url = "{tmp_path / 'origin-wiki.git'}"
        branch = "release/*"
        secret_env = "WIKI_SECRET"
    """) + textwrap.dedent(extra)
    return parse_config(text, str(tmp_path / "hooksvc.toml"), environ)


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

"""`hooksvc check-config` proves each GitHub App host's credentials: one installation token per
repository its apps deploy, or the reason GitHub gave none."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hooksvc.config import parse_config
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from workers.checks import check_services

pytestmark = pytest.mark.docker


def test_each_repository_of_an_app_host_gets_a_token_or_the_reason(tmp_path: Path) -> None:
    """An installed repository is ok; one the App is not installed on is named with the fix."""
    app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/shop"}))
    with FakeGitHost({}, github_app=app) as fake:
        tables = "".join(textwrap.dedent(f"""
            [apps.{name}]
            host = "gh"
            repo = "acme/{name}"
            clone_url = "https://github.test/acme/{name}.git"
            secret_env = "APP_SECRET"
        """) for name in ("shop", "blog"))
        text = textwrap.dedent(f"""
            [redis]
            url = "{TEST_REDIS_URL}"
            [hosts.gh]
            kind = "github"
            api_url = "{fake.url}/github"
            app_id = {APP_ID}
            private_key_file = "{write_app_key(tmp_path)}"
        """) + tables
        config = parse_config(text, "hooksvc.toml", {"APP_SECRET": "webhook-secret-0123"})
        results = dict(check_services(config))
        assert results[f"GitHub App {APP_ID} on acme/shop"] is None
        problem = results[f"GitHub App {APP_ID} on acme/blog"]
        assert problem is not None and "the GitHub App is not installed on acme/blog" in problem
        assert len(fake.issued_tokens) == 1
        assert "PRIVATE KEY" not in repr(results)

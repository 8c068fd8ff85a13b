"""HTTPS clones with a GitHub App's installation token: sent as x-access-token through git's
environment, refused once it lapsed (CredentialsRefused), and fine again with a renewed one; a job
renews it by itself."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.config import AppConfig, GitHubAppConfig, HostConfig, Secret, parse_config
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.git import GitHttpServer
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from workers import host_auth
from workers.git import CredentialsRefused, GitMirror
from workers.host_auth import HostCredentials
from workers.jobs import execute


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/private"}))
    with FakeGitHost({}, github_app=app) as host:
        yield host


@pytest.fixture(autouse=True)
def fresh_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_auth, "CREDENTIALS", HostCredentials())


def test_a_lapsed_installation_token_is_refused_then_renewed(tmp_path: Path, fake: FakeGitHost) -> None:
    """A fetch with a token the host let lapse raises CredentialsRefused; after `refused` a new token fetches."""
    key = write_app_key(tmp_path)
    host = HostConfig(name="gh", kind="github", api_url=f"{fake.url}/github",
                      app=GitHubAppConfig(APP_ID, Secret(key.read_text()), key))
    lines: list[str] = []
    with GitHttpServer(tmp_path / "git", token=None, accepts=fake.accepts_installation_token) as server:
        origin = server.origin("private")
        sha = origin.commit("first", {"a.txt": "a"})
        app = AppConfig(name="private", host="gh", host_kind="github", repo="acme/private", clone_url=origin.url,
                        secret=Secret("webhook-secret-0123"))
        GitMirror(host_auth.with_clone_token(app, host), tmp_path / "state", lines.append).fetch()
        fake.expire_app_tokens()
        stale = GitMirror(host_auth.with_clone_token(app, host), tmp_path / "state", lines.append)
        with pytest.raises(CredentialsRefused, match="GitHub App installation"):
            stale.fetch()
        host_auth.refused(host, app.repo)
        renewed = GitMirror(host_auth.with_clone_token(app, host), tmp_path / "state", lines.append)
        renewed.fetch()
        assert renewed.resolve("refs/heads/main") == sha
        assert len(fake.issued_tokens) == 2
        assert {user for *_, user in server.requests} == {"x-access-token"}
        assert not any(t in "\n".join(lines) for t in fake.issued_tokens)


def test_a_job_renews_a_refused_installation_token_and_fetches_again(
    tmp_path: Path, fake: FakeGitHost, redis: redis_lib.Redis,
) -> None:
    """A job whose cached token the origin refuses renews it once, fetches, and goes on (here: to a
    skip, since the head is already live), saying so in its log."""
    key = write_app_key(tmp_path)
    with GitHttpServer(tmp_path / "git", token=None, accepts=fake.accepts_installation_token) as server:
        origin = server.origin("private")
        head = origin.commit("first", {"a.txt": "a"})
        config = parse_config(textwrap.dedent(f"""
            [redis]
            url = "{TEST_REDIS_URL}"
            [worker]
            state_dir = "{tmp_path / 'state'}"
            [hosts.gh]
            kind = "github"
            api_url = "{fake.url}/github"
            app_id = {APP_ID}
            private_key_file = "{key}"
            [apps.private]
            host = "gh"
            repo = "acme/private"
            clone_url = "{origin.url}"
            secret_env = "APP_SECRET"
        """), "hooksvc.toml", {"APP_SECRET": "webhook-secret-0123"})
        host_auth.authorization(config.hosts["gh"], "acme/private")  # the worker's cache holds a token ...
        fake.expire_app_tokens()  # ... that GitHub no longer takes
        redis.hset(keys.app_live("private"), mapping={"sha": head, "deployment_id": "0", "since": "0"})
        store = DeploymentStore(redis)
        dep = store.intake.submit([NewDeployment("private", head, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        assert execute(config, store, redis, dep.id) == "skipped"
        log = "\n".join(store.logs.read(dep.id)[0])
        assert "the origin refused the installation token: renewing it and fetching again" in log
        assert len(fake.issued_tokens) == 2
        assert not any(t in log for t in fake.issued_tokens)

"""Reporting to GitHub as an App, end to end: real Redis, the real store and outbox sender, and a
stand-in GitHub that verifies the App's JWT with its public key and hands out installation tokens
that expire. Statuses, deployments and check runs all go out with the installation token."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_lib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hooksvc import keys
from hooksvc.config import AppConfig, Config, parse_config
from hooksvc.deployments import DeploymentState
from hooksvc.store import DeploymentStore
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from tests.helpers.outbox import outbox_backlog, read_counters
from tests.workers import test_outbox_sender
from tests.workers.test_outbox_sender import CLIENT_TIMEOUT, PUBLIC_URL, SHA1, SHA2, TOKENS, FakeClock, drain, queue
from workers import host_auth
from workers.host_auth import HostCredentials
from workers.outbox_sender import OutboxSender

S = DeploymentState
store = test_outbox_sender.store
clock = test_outbox_sender.clock


def app_config(tmp_path: Path, base: str, redis_url: str, host_keys: str = "", key: Path | None = None) -> Config:
    """shop (and stranger, on a repository the App is not installed on) on a GitHub host authenticated
    as an App (installation found per repository unless `host_keys` sets it; `key` the App's own
    unless given); gh-token a GitHub host with a personal token, for comparison."""
    key = key or write_app_key(tmp_path)
    text = textwrap.dedent(f"""
        [server]
        public_url = "{PUBLIC_URL}"
        [worker]
        state_dir = "{tmp_path / 'state'}"
        [hosts.gh-app]
        kind = "github"
        api_url = "{base}/github"
        app_id = {APP_ID}
        private_key_file = "{key}"
        {host_keys}
        [hosts.gh-token]
        kind = "github"
        api_url = "{base}/github"
        token_env = "GITHUB_TOKEN"
        [apps.shop]
        host = "gh-app"
        repo = "acme/shop"
        clone_url = "{tmp_path / 'shop'}.git"
        secret_env = "APP_SECRET"
        [apps.stranger]
        host = "gh-app"
        repo = "acme/elsewhere"
        clone_url = "{tmp_path / 'stranger'}.git"
        secret_env = "APP_SECRET"
        environment = ""
    """)
    env = {"APP_SECRET": "webhook-secret-0123", "GITHUB_TOKEN": TOKENS["github"], "REDIS_URL": redis_url}
    return parse_config(text, str(tmp_path / "hooksvc.toml"), env)


@pytest.fixture(autouse=True)
def fresh_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty installation-token cache, as a new worker process does."""
    monkeypatch.setattr(host_auth, "CREDENTIALS", HostCredentials())


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/shop"}))
    with FakeGitHost(TOKENS, github_app=app) as host:
        yield host


@pytest.fixture
def sender(tmp_path: Path, fake: FakeGitHost, redis: redis_lib.Redis, redis_url: str, clock: FakeClock) -> OutboxSender:
    config = app_config(tmp_path, fake.url, redis_url)
    return OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, http_timeout=CLIENT_TIMEOUT)


def deploy(store: DeploymentStore, app: str, sha: str, final: DeploymentState, error: str = "") -> str:
    dep = queue(store, app, sha)
    store.start(dep.id, previous_sha="")
    store.finish(dep.id, final, error, live_sha=sha if final is S.SUCCEEDED else None)
    return dep.id


def page(deployment_id: str) -> str:
    return f"{PUBLIC_URL}/deployments/{deployment_id}"


class TestInstallationToken:
    def test_everything_goes_out_with_the_installation_token(self, store: DeploymentStore, sender: OutboxSender,
                                                             clock: FakeClock, redis: redis_lib.Redis,
                                                             fake: FakeGitHost) -> None:
        """Status, deployment and check run are accepted with one installation token, got with a valid JWT."""
        deploy(store, "shop", SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.violations == []
        assert fake.statuses("github", SHA1, "hooksvc/shop") == ["pending", "pending", "success"]
        assert [d.statuses for d in fake.deployments("github")] == [["queued", "in_progress", "success"]]
        [token] = fake.issued_tokens
        assert {a.headers["authorization"] for a in fake.accepted} == {f"Bearer {token}"}
        claims = fake.jwt_claims  # the installation lookup, then the token
        assert len(claims) == 2
        for claim in claims:
            assert claim["iss"] == str(APP_ID)
            assert claim["iat"] <= time.time() - 59 and claim["exp"] - claim["iat"] <= 600
        assert read_counters(redis)[keys.CHECK_RUN_SENT] == {"github": 3}

    def test_an_expired_token_is_renewed_and_the_request_sent_again(self, store: DeploymentStore,
                                                                    sender: OutboxSender, clock: FakeClock,
                                                                    redis: redis_lib.Redis,
                                                                    fake: FakeGitHost) -> None:
        """A token that lapsed while cached gets a 401; hooksvc renews it once and nothing is dropped."""
        deploy(store, "shop", SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        fake.expire_app_tokens()
        dep_id = deploy(store, "shop", SHA2, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.refused_tokens == 1
        assert len(fake.issued_tokens) == 2
        assert fake.statuses("github", SHA2, "hooksvc/shop") == ["pending", "pending", "success"]
        counters = read_counters(redis)
        assert counters[keys.STATUS_DROPPED] == {} and counters[keys.CHECK_RUN_DROPPED] == {}
        log = "\n".join(store.logs.read(dep_id)[0])
        assert "HTTP 401 with the installation token; renewing it, sending again" in log
        assert fake.issued_tokens[0] not in log and fake.issued_tokens[1] not in log

    def test_a_repository_without_the_app_is_retried_and_says_why(self, store: DeploymentStore,
                                                                  sender: OutboxSender, clock: FakeClock,
                                                                  redis: redis_lib.Redis,
                                                                  fake: FakeGitHost) -> None:
        """No installation covers the repository: the status waits for retry, its log naming the fix."""
        dep_id = queue(store, "stranger", SHA1).id
        sender.run_once()
        assert outbox_backlog(redis) > 0
        log = "\n".join(store.logs.read(dep_id)[0])
        assert "the GitHub App is not installed on acme/elsewhere" in log
        assert "retrying" in log
        assert fake.accepted == []


    def test_a_jwt_signed_with_another_key_is_refused(self, tmp_path: Path, store: DeploymentStore,
                                                      clock: FakeClock, redis: redis_lib.Redis, redis_url: str,
                                                      fake: FakeGitHost) -> None:
        """The stand-in checks the signature: a key that is not the App's gets no token, and the log says
        what to check without quoting the key."""
        other = tmp_path / "other.pem"
        other.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        config = app_config(tmp_path, fake.url, redis_url, f"installation_id = {INSTALLATION_ID}", key=other)
        sender = OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5,
                              http_timeout=CLIENT_TIMEOUT)
        dep_id = queue(store, "shop", SHA1).id
        sender.run_once()
        log = "\n".join(store.logs.read(dep_id)[0])
        assert f"GitHub refused an installation token for installation {INSTALLATION_ID}: HTTP 401" in log
        assert fake.issued_tokens == [] and fake.accepted == []
        assert "PRIVATE KEY" not in log


class TestCheckRuns:
    def test_a_successful_deployment(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                                     redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """One check run named like the status context: queued, in progress, completed success, with the
        plan, the outcome and a link to the deployment page."""
        dep_id = deploy(store, "shop", SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        [run] = fake.check_runs()
        assert (run.repo, run.head_sha, run.name) == ("acme/shop", SHA1, "hooksvc/shop")
        assert run.created["status"] == "queued" and run.created["external_id"] == dep_id
        assert [u["status"] for u in run.updates] == ["in_progress", "completed"]
        assert (run.status, run.conclusion) == ("completed", "success")
        assert run.latest["details_url"] == page(dep_id)
        output = run.latest["output"]
        assert output["title"] == f"Deployment {dep_id} succeeded"
        assert "### Plan" in output["summary"] and "strategy `rolling`" in output["summary"]
        assert f"### Outcome\nDeployment {dep_id} succeeded" in output["summary"]
        assert f"[Deployment page]({page(dep_id)})" in output["summary"]
        assert redis.keys(f"{keys.OUTBOX_PREFIX}:check_run:*") == []
        assert outbox_backlog(redis) == 0

    @pytest.mark.parametrize(("final", "error", "conclusion"), [
        (S.FAILED, "health check failed: web", "failure"),
        (S.ERROR, "the worker running this deployment died", "failure"),
        (S.SKIPPED, "no change under paths", "neutral"),
        (S.CANCELLED, "", "cancelled"),
    ])
    def test_conclusions(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                         redis: redis_lib.Redis, fake: FakeGitHost, final: DeploymentState, error: str,
                         conclusion: str) -> None:
        """Failed and error end `failure` with the reason in the summary; skipped `neutral`; cancelled `cancelled`."""
        deploy(store, "shop", SHA1, final, error)
        drain(sender, clock, redis)
        [run] = fake.check_runs()
        assert (run.status, run.conclusion) == ("completed", conclusion)
        assert error in run.latest["output"]["summary"]
        assert fake.violations == []

    def test_a_superseded_deployment_is_cancelled(self, store: DeploymentStore, sender: OutboxSender,
                                                  clock: FakeClock, redis: redis_lib.Redis,
                                                  fake: FakeGitHost) -> None:
        """A queued deployment that a newer push replaced ends its check run `cancelled`."""
        queue(store, "shop", SHA1)
        queue(store, "shop", SHA2)
        drain(sender, clock, redis)
        first = next(r for r in fake.check_runs() if r.head_sha == SHA1)
        assert [first.created["status"], *(u["status"] for u in first.updates)] == ["queued", "completed"]
        assert first.conclusion == "cancelled"

    def test_a_personal_token_host_gets_no_check_runs(self, tmp_path: Path, store: DeploymentStore,
                                                      clock: FakeClock, redis: redis_lib.Redis, redis_url: str) -> None:
        """GitHub lets only Apps write check runs: with a personal token, statuses only, nothing left queued."""
        with FakeGitHost(TOKENS) as plain:
            text = app_config(tmp_path, plain.url, redis_url)
            config = Config(path=text.path, server=text.server, redis=text.redis, worker=text.worker,
                            hosts=text.hosts, apps={"shop": _on(text, "shop", "gh-token")})
            sender = OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5,
                                  http_timeout=CLIENT_TIMEOUT)
            deploy(store, "shop", SHA1, S.SUCCEEDED)
            drain(sender, clock, redis)
            assert plain.statuses("github", SHA1, "hooksvc/shop") == ["pending", "pending", "success"]
            assert plain.check_runs() == [] and plain.violations == []
            assert read_counters(redis)[keys.CHECK_RUN_SENT] == {}
            assert outbox_backlog(redis) == 0


def _on(config: Config, app: str, host: str) -> AppConfig:
    """`app` moved to another `[hosts.*]` table."""
    return replace(config.apps[app], host=host)

"""Deployments recorded on the git host (GitHub Deployments, GitLab deployments) end to end: real
Redis, the real store's state changes and outbox listener, the real outbox sender, and a fake host
that checks every request against the host's documented deployments API."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import keys
from hooksvc.config import Config, parse_config
from hooksvc.deployments import DeploymentState
from hooksvc.store import DeploymentStore
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.outbox import outbox_backlog, read_counters
from tests.workers import test_outbox_sender
from tests.workers.test_outbox_sender import (
    CLIENT_TIMEOUT,
    PUBLIC_URL,
    SHA1,
    SHA2,
    TOKENS,
    FakeClock,
    app_tables,
    drain,
    queue,
)
from workers.host_deployments import DEPLOYMENT_APIS, _by_kind, github, gitlab
from workers.outbox_sender import OutboxSender

S = DeploymentState
#: The commit-status tests' fixtures: the real store with the outbox writer, and a clock `sleep` moves.
store = test_outbox_sender.store
clock = test_outbox_sender.clock
SHOP_URL = "https://shop.example.com"


def environments_config(tmp_path: Path, base: str, redis_url: str) -> Config:
    """shop deploys to GitHub's production environment, stage to a GitHub staging one, wiki to a
    GitLab environment named after it, blog to Gitea (no deployments API), quiet records none."""
    env = {"GITHUB_TOKEN": TOKENS["github"], "GITLAB_TOKEN": TOKENS["gitlab"], "GITEA_TOKEN": TOKENS["gitea"],
           "APP_SECRET": "webhook-secret", "REDIS_URL": redis_url}
    apps = app_tables(tmp_path, [
        ("shop", "github", "acme/shop", f'environment = "production"\nenvironment_url = "{SHOP_URL}"'),
        ("stage", "github", "acme/shop", 'environment = "staging"'),
        ("wiki", "gitlab", "acme/docs/wiki", ""),
        ("blog", "gitea", "acme/blog", ""),
        ("quiet", "github", "acme/quiet", 'environment = ""'),
    ])
    hosts = "".join(textwrap.dedent(f"""
        [hosts.{kind}]
        kind = "{kind}"
        api_url = "{base}/{kind}"
        token_env = "{kind.upper()}_TOKEN"
    """) for kind in ("github", "gitlab", "gitea"))
    text = f'[server]\npublic_url = "{PUBLIC_URL}"\n[worker]\nstate_dir = "{tmp_path / "state"}"\n' + hosts + apps
    return parse_config(text, str(tmp_path / "hooksvc.toml"), env)


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    with FakeGitHost(TOKENS, hang_seconds=1.0) as host:
        yield host


@pytest.fixture
def sender(tmp_path: Path, fake: FakeGitHost, redis: redis_lib.Redis, redis_url: str, clock: FakeClock) -> OutboxSender:
    config = environments_config(tmp_path, fake.url, redis_url)
    return OutboxSender(config, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, http_timeout=CLIENT_TIMEOUT)


def deploy(store: DeploymentStore, app: str, sha: str, final: DeploymentState, error: str = "",
           ref: str = "refs/heads/main") -> str:
    """Queue, start and end one deployment; its id."""
    dep = queue(store, app, sha, ref=ref)
    store.start(dep.id, previous_sha="")
    store.finish(dep.id, final, error, live_sha=sha if final is S.SUCCEEDED else None)
    return dep.id


def page(deployment_id: str) -> str:
    return f"{PUBLIC_URL}/deployments/{deployment_id}"


def log_of(store: DeploymentStore, deployment_id: str) -> str:
    return "\n".join(store.logs.read(deployment_id)[0])


def assert_nothing_left(redis: redis_lib.Redis) -> None:
    """Every event delivered or given up; no per-deployment record is left behind."""
    assert outbox_backlog(redis) == 0
    assert redis.keys(f"{keys.OUTBOX_PREFIX}:lane:*") == []
    assert redis.keys(f"{keys.OUTBOX_PREFIX}:host_deployment:*") == []


class TestGithub:
    """A deployment per release, its statuses in order, and the replaced release made inactive."""

    def test_a_successful_release(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                                  redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """create → queued → in_progress → success, for the exact sha, with links to the page and the app."""
        dep_id = deploy(store, "shop", SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.violations == []
        [d] = fake.deployments("github")
        assert d.statuses == ["queued", "in_progress", "success"]
        assert (d.repo, d.sha, d.environment) == ("acme/shop", SHA1, "production")
        assert d.created["auto_merge"] is False and d.created["required_contexts"] == []
        assert d.created["payload"] == {"hooksvc": {"app": "shop", "deployment_id": dep_id, "url": page(dep_id)}}
        assert [u["log_url"] for u in d.updates] == [page(dep_id)] * 3
        assert [u["environment_url"] for u in d.updates] == [SHOP_URL] * 3
        assert d.updates[-1]["description"] == f"Deployment {dep_id} succeeded"
        assert read_counters(redis)[keys.HOST_DEPLOYMENT_SENT] == {"github": 4}
        assert_nothing_left(redis)

    @pytest.mark.parametrize(("app", "environment"), [("shop", "production"), ("stage", "staging")])
    def test_the_replaced_release_becomes_inactive(self, store: DeploymentStore, sender: OutboxSender,
                                                   clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost,
                                                   app: str, environment: str) -> None:
        """After a second successful release only it is active, in a production environment (where GitHub
        does not do it by itself) as in any other."""
        first = deploy(store, app, SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        second = deploy(store, app, SHA2, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.violations == []
        old, new = fake.deployments("github")
        assert (old.sha, old.state, new.sha, new.state) == (SHA1, "inactive", SHA2, "success")
        assert new.statuses == ["queued", "in_progress", "success"]
        inactive = [u for u in old.updates if u["state"] == "inactive" and "description" in u]
        assert inactive == [{"state": "inactive", "log_url": page(first),
                             "description": f"Replaced by deployment {second} ({SHA2[:12]})"}]
        assert {d.environment for d in (old, new)} == {environment}
        assert_nothing_left(redis)

    @pytest.mark.parametrize(("final", "error", "state"), [
        (S.FAILED, "health check failed: web", "failure"),
        (S.ERROR, "the worker running this deployment died", "error"),
    ])
    def test_a_failed_release_leaves_the_live_one_active(self, store: DeploymentStore, sender: OutboxSender,
                                                          clock: FakeClock, redis: redis_lib.Redis,
                                                          fake: FakeGitHost, final: DeploymentState, error: str,
                                                          state: str) -> None:
        """A release that failed ends `failure` (build, health) or `error` (internal), and the release that
        still serves stays active."""
        deploy(store, "shop", SHA1, S.SUCCEEDED)
        bad = deploy(store, "shop", SHA2, final, error)
        drain(sender, clock, redis)
        live, broken = fake.deployments("github")
        assert live.statuses == ["queued", "in_progress", "success"]
        assert broken.statuses == ["queued", "in_progress", state]
        assert broken.updates[-1]["description"] == f"Deployment {bad} {final}: {error}"
        assert fake.violations == []

    def test_releases_that_never_ran_are_inactive(self, store: DeploymentStore, sender: OutboxSender,
                                                  clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A superseded deployment and a skipped one changed nothing: they end `inactive`, saying why."""
        superseded = queue(store, "shop", SHA1)
        newer = queue(store, "shop", SHA2)
        store.start(newer.id, previous_sha=SHA1)
        store.finish(newer.id, S.SKIPPED, "no change under paths")
        drain(sender, clock, redis)
        first, second = fake.deployments("github")
        assert first.statuses == ["queued", "inactive"]
        assert first.updates[-1]["description"] == f"Not deployed: superseded by {SHA2[:12]} (deployment {newer.id})"
        assert second.statuses == ["queued", "in_progress", "inactive"]
        assert second.updates[-1]["description"] == "Skipped: no change under paths"
        assert superseded.id != newer.id
        assert_nothing_left(redis)

    def test_a_long_reason_is_cut_to_140_characters(self, store: DeploymentStore, sender: OutboxSender,
                                                    clock: FakeClock, redis: redis_lib.Redis,
                                                    fake: FakeGitHost) -> None:
        """GitHub refuses a status description over 140 characters: it is cut, with an ellipsis."""
        deploy(store, "shop", SHA1, S.FAILED, "container shop-web-2 became unhealthy: " + "refused " * 40)
        drain(sender, clock, redis)
        [d] = fake.deployments("github")
        assert len(d.updates[-1]["description"]) == 140 and d.updates[-1]["description"].endswith("…")
        assert fake.violations == []


class TestGitlab:
    """A deployment in the app's environment, created once it runs and updated when it ends."""

    @pytest.mark.parametrize(("final", "statuses"), [
        (S.SUCCEEDED, ["running", "success"]),
        (S.FAILED, ["running", "failed"]),
        (S.ERROR, ["running", "failed"]),
        (S.SKIPPED, ["running", "canceled"]),
    ])
    def test_create_then_update(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                                redis: redis_lib.Redis, fake: FakeGitHost, final: DeploymentState,
                                statuses: list[str]) -> None:
        """POST creates it `running` with environment, sha, ref and tag; PUT gives the final status."""
        deploy(store, "wiki", SHA1, final, "" if final is S.SUCCEEDED else "it broke")
        drain(sender, clock, redis)
        assert fake.violations == []
        [d] = fake.deployments("gitlab")
        assert d.created == {"environment": "wiki", "sha": SHA1, "ref": "main", "tag": False, "status": "running"}
        assert (d.repo, d.statuses) == ("acme/docs/wiki", statuses)
        assert_nothing_left(redis)

    def test_queued_alone_sends_nothing_and_a_cancelled_one_is_created_canceled(
            self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock, redis: redis_lib.Redis,
            fake: FakeGitHost) -> None:
        """GitLab has no queued status: a deployment shows once it runs, or, cancelled first, as `canceled`;
        a tag is named as one."""
        dep = queue(store, "wiki", SHA1, ref="refs/tags/v1.0")
        drain(sender, clock, redis)
        assert fake.deployments("gitlab") == []
        store.cancel(dep.id)
        drain(sender, clock, redis)
        [d] = fake.deployments("gitlab")
        assert d.created == {"environment": "wiki", "sha": SHA1, "ref": "v1.0", "tag": True, "status": "canceled"}
        assert fake.violations == []


    def test_a_rollback_names_the_apps_branch(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                                              redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A rollback names no ref; GitLab, which requires one, gets the branch the app deploys."""
        deploy(store, "wiki", SHA2, S.SUCCEEDED, ref="")
        drain(sender, clock, redis)
        [d] = fake.deployments("gitlab")
        assert (d.created["ref"], d.created["tag"], d.statuses) == ("main", False, ["running", "success"])


class TestDelivery:
    """The same outbox as commit statuses: retried in order, never endless, never leaking a token."""

    def test_a_host_that_is_down_gets_everything_later_in_order(
            self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock, redis: redis_lib.Redis,
            fake: FakeGitHost, caplog: pytest.LogCaptureFixture) -> None:
        """Failures and a hang on the deployments API are retried with backoff; the statuses wait for their
        create, nothing is created twice, and no log line holds a token."""
        caplog.set_level(logging.DEBUG)
        fake.fail_next("github-deployments", 3, status=503)
        fake.hang_next("github-deployments", 1)
        fake.fail_next("github-deployments", 2, status=502)
        first = deploy(store, "shop", SHA1, S.SUCCEEDED)
        sender.run_once()
        assert fake.deployments("github") == []  # the create failed: nothing else was tried
        assert redis.llen(keys.outbox_lane("host_deployment:shop")) == 3
        drain(sender, clock, redis)
        second = deploy(store, "shop", SHA2, S.SUCCEEDED)
        fake.fail_next("github-deployments", 4, status=500)  # the create, the statuses, the inactive
        drain(sender, clock, redis)
        old, new = fake.deployments("github")
        assert old.statuses == ["queued", "in_progress", "success", "inactive"]
        assert new.statuses == ["queued", "in_progress", "success"]
        assert fake.faults_served("github-deployments") == 10
        assert read_counters(redis)[keys.HOST_DEPLOYMENT_FAILURES] == {"github": 10}
        assert fake.violations == []
        text = log_of(store, first) + log_of(store, second) + caplog.text
        assert "attempt 6 failed" in log_of(store, first) and "retrying in" in text
        assert "no answer within 0.25s" in text
        assert TOKENS["github"] not in text
        assert_nothing_left(redis)

    def test_a_refused_create_is_not_retried_and_says_what_to_fix(
            self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock, redis: redis_lib.Redis,
            fake: FakeGitHost) -> None:
        """A 403 on the create drops it once, with a line naming the permission; the deployment's later
        states are not sent, while its commit statuses are."""
        fake.fail_next("github-deployments", 1, status=403)
        dep = deploy(store, "shop", SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.deployments("github") == []
        assert fake.faults_served("github-deployments") == 1
        assert fake.statuses("github", SHA1, "hooksvc/shop") == ["pending", "pending", "success"]
        assert read_counters(redis)[keys.HOST_DEPLOYMENT_DROPPED] == {"github": 1}
        line = [x for x in log_of(store, dep).splitlines() if "dropped" in x]
        assert line == [f"report: GitHub deployment in environment 'production' (acme/shop@{SHA1[:12]}): create: "
                        "dropped: HTTP 403: {\"message\": \"injected 403\"}; not retried; if the token may not "
                        "write deployments, give it the repo_deployment scope (fine-grained: Deployments read and "
                        "write), or set the app's environment = \"\" to record none"]
        assert_nothing_left(redis)

    def test_a_refused_status_is_dropped_and_the_next_ones_go_on(
            self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock, redis: redis_lib.Redis,
            fake: FakeGitHost) -> None:
        """A 422 on one status drops that status only; the deployment still ends with its final one."""
        dep = queue(store, "shop", SHA1)
        drain(sender, clock, redis)
        fake.fail_next("github-deployments", 1, status=422)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        drain(sender, clock, redis)
        [d] = fake.deployments("github")
        assert d.statuses == ["queued", "success"]
        assert read_counters(redis)[keys.HOST_DEPLOYMENT_DROPPED] == {"github": 1}
        assert "in_progress (running): dropped: HTTP 422" in log_of(store, dep.id)
        assert_nothing_left(redis)

    @pytest.mark.parametrize("app", ["blog", "quiet"])
    def test_no_deployments_api_no_requests(self, store: DeploymentStore, sender: OutboxSender, clock: FakeClock,
                                            redis: redis_lib.Redis, fake: FakeGitHost, app: str) -> None:
        """Gitea gets commit statuses only, and so does an app whose environment is ""."""
        deploy(store, app, SHA1, S.SUCCEEDED)
        drain(sender, clock, redis)
        assert fake.deployments("github") == fake.deployments("gitlab") == []
        assert read_counters(redis)[keys.HOST_DEPLOYMENT_SENT] == {}
        assert_nothing_left(redis)



class TestDeploymentsRegistry:
    def test_github_and_gitlab_have_a_deployments_api(self) -> None:
        """Only GitHub and GitLab declare a deployments API, each from its own module."""
        assert dict(DEPLOYMENT_APIS) == {"github": github.DEPLOYMENTS, "gitlab": gitlab.DEPLOYMENTS}

    def test_a_deployments_api_for_a_kind_without_an_api_is_refused(self) -> None:
        """A deployments module naming a kind that has no API (Gogs) is refused by name."""
        with pytest.raises(ValueError, match="'gogs', which is no host kind with an API"):
            _by_kind([replace(github.DEPLOYMENTS, kinds=frozenset({"gogs"}))])

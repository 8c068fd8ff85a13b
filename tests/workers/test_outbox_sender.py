"""Commit statuses and notifications end to end: real Redis, the real store and its state changes,
the outbox listener, the reporter, and a fake git host that checks every request it receives."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import defaults, keys
from hooksvc.config import Config, parse_config
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.outbox import status_lane, write_events
from hooksvc.runtime.worker import WorkerRuntime
from hooksvc.store import DeploymentStore
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.outbox import outbox_backlog, read_counters
from workers import notify
from workers.outbox_sender import FINAL_STATUS_RETRY_SECONDS, OutboxSender

S = DeploymentState
SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"
SHA3 = "3333333333333333333333333333333333333333"
TOKENS = {"github": "ghp-fake-github-token", "gitea": "gitea-fake-token", "gitlab": "glpat-fake-gitlab-token",
          "bitbucket": "bb-fake-access-token", "bitbucket-server": "bbdc-fake-http-token"}
NOTIFY_SECRET = "notify-hmac-secret"
SLACK_PATH = "/slack/services/T0001/B0001/slack-url-secret"
#: Short enough that a hung request costs the test a quarter second.
CLIENT_TIMEOUT = 0.25
PUBLIC_URL = "https://deploy.example.com"


class FakeClock:
    """Wall-clock stand-in: `sleep` advances it instantly."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def app_tables(tmp_path: Path, apps: list[tuple[str, str, str, str]], common: str = "") -> str:
    """`[apps.NAME]` tables from (name, host, repo, extra TOML lines), `common` lines in each."""
    tables = ""
    for name, host, repo, extra in apps:
        tables += textwrap.dedent(f"""
            [apps.{name}]
            host = "{host}"
            repo = "{repo}"
            clone_url = "{tmp_path / name}.git"
            secret_env = "APP_SECRET"
        """) + common + "\n" + extra + "\n"
    return tables


def reporting_config(tmp_path: Path, base: str, redis_url: str) -> Config:
    """Four apps, one per host kind, all pointed at the fake; shop also notifies. They record no
    deployments on the host (tests/workers/test_host_deployments.py covers those)."""
    env = {
        "GITHUB_TOKEN": TOKENS["github"], "GITEA_TOKEN": TOKENS["gitea"], "GITLAB_TOKEN": TOKENS["gitlab"],
        "BITBUCKET_TOKEN": TOKENS["bitbucket"], "BITBUCKET_DC_TOKEN": TOKENS["bitbucket-server"],
        "APP_SECRET": "webhook-secret", "NOTIFY_SECRET": NOTIFY_SECRET, "SLACK_URL": base + SLACK_PATH,
        "REDIS_URL": redis_url, "HOOKSVC_API_TOKENS": "operator-token-0",
    }
    apps = app_tables(tmp_path, [
        ("shop", "github", "acme/shop", 'status_context = "deploy/shop"\nnotify_url = "' + base + '/notify"\n'
                                        'notify_secret_env = "NOTIFY_SECRET"\nslack_url_env = "SLACK_URL"'),
        ("blog", "gitea", "acme/blog", ""),
        ("forge", "forgejo", "acme/forge", ""),
        ("wiki", "gitlab", "acme/docs/wiki", ""),
        ("quiet", "tokenless", "acme/quiet", ""),
        ("api", "bitbucket", "acme/api", ""),
        ("console", "bitbucket-dc", "OPS/console", ""),
        ("docs", "gogs", "acme/docs", ""),
    ], common='environment = ""')
    text = textwrap.dedent(f"""
        [server]
        public_url = "{PUBLIC_URL}"

        [worker]
        state_dir = "{tmp_path / 'state'}"

        [hosts.github]
        kind = "github"
        api_url = "{base}/github"
        token_env = "GITHUB_TOKEN"

        [hosts.gitea]
        kind = "gitea"
        api_url = "{base}/gitea"
        token_env = "GITEA_TOKEN"

        [hosts.forgejo]
        kind = "forgejo"
        api_url = "{base}/gitea/api/v1"
        token_env = "GITEA_TOKEN"

        [hosts.gitlab]
        kind = "gitlab"
        api_url = "{base}/gitlab"
        token_env = "GITLAB_TOKEN"

        [hosts.tokenless]
        kind = "github"
        api_url = "{base}/github"

        [hosts.bitbucket]
        kind = "bitbucket"
        api_url = "{base}/bitbucket"
        token_env = "BITBUCKET_TOKEN"

        [hosts.bitbucket-dc]
        kind = "bitbucket-server"
        api_url = "{base}/bitbucket-server"
        token_env = "BITBUCKET_DC_TOKEN"

        [hosts.gogs]
        kind = "gogs"
        token_env = "GITEA_TOKEN"
    """) + apps
    return parse_config(text, str(tmp_path / "hooksvc.toml"), env)


@pytest.fixture
def fake() -> Iterator[FakeGitHost]:
    with FakeGitHost(TOKENS, notify_secret=NOTIFY_SECRET, slack_path=SLACK_PATH, hang_seconds=1.0) as host:
        yield host


@pytest.fixture
def cfg(tmp_path: Path, fake: FakeGitHost, redis_url: str) -> Config:
    return reporting_config(tmp_path, fake.url, redis_url)


@pytest.fixture
def store(redis: redis_lib.Redis) -> DeploymentStore:
    return DeploymentStore(redis, listeners=[write_events])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reporter(cfg: Config, redis: redis_lib.Redis, clock: FakeClock) -> OutboxSender:
    return OutboxSender(cfg, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, http_timeout=CLIENT_TIMEOUT)


def queue(store: DeploymentStore, app: str, sha: str, ref: str = "refs/heads/main") -> Deployment:
    return store.intake.submit([NewDeployment(app, sha, ref, Trigger.PUSH)]).deployments[0]


def drain(reporter: OutboxSender, clock: FakeClock, redis: redis_lib.Redis, rounds: int = 500) -> int:
    """Run the reporter, jumping the clock to each next retry, until the outbox is empty."""
    delivered = 0
    for _ in range(rounds):
        delivered += reporter.run_once()
        head = redis.zrange(keys.OUTBOX_DUE, 0, 0, withscores=True)
        if not head:
            return delivered
        clock.now = max(clock.now, float(head[0][1]))
    raise AssertionError(f"the outbox did not drain in {rounds} rounds")


def log_of(store: DeploymentStore, deployment_id: str) -> str:
    return "\n".join(store.logs.read(deployment_id)[0])


class TestStatusSequences:
    """Every path through a deployment ends with the right final status, after its pending ones."""

    @pytest.mark.parametrize(("app", "kind", "context", "expected"), [
        ("shop", "github", "deploy/shop", ["pending", "pending", "success"]),
        ("blog", "gitea", "hooksvc/blog", ["pending", "pending", "success"]),
        ("forge", "gitea", "hooksvc/forge", ["pending", "pending", "success"]),
        ("wiki", "gitlab", "hooksvc/wiki", ["pending", "running", "success"]),
        ("api", "bitbucket", "hooksvc/api", ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]),
        ("console", "bitbucket-server", "hooksvc/console", ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]),
    ])
    def test_success(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                     redis: redis_lib.Redis, fake: FakeGitHost, app: str, kind: str, context: str,
                     expected: list[str]) -> None:
        """A successful deployment posts pending when queued, pending (GitLab: running) when started, then success."""
        dep = queue(store, app, SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        notifications = 2 if app == "shop" else 0  # shop also has a webhook and a Slack target
        assert drain(reporter, clock, redis) == 3 + notifications
        assert fake.statuses(kind, SHA1, context) == expected
        assert fake.violations == []
        last = fake.accepted[-1]
        assert last.target_url == f"{PUBLIC_URL}/deployments/{dep.id}"
        assert last.description == f"Deployment {dep.id} succeeded"

    def test_gitlab_gets_the_encoded_project_and_the_branch(self, store: DeploymentStore, reporter: OutboxSender,
                                                            clock: FakeClock, redis: redis_lib.Redis,
                                                            fake: FakeGitHost) -> None:
        """GitLab statuses name the nested project URL-encoded and carry the short branch name."""
        queue(store, "wiki", SHA1, ref="refs/heads/release/1.0")
        drain(reporter, clock, redis)
        [status] = fake.accepted
        assert (status.repo, status.ref, status.state) == ("acme/docs/wiki", "release/1.0", "pending")

    def test_bitbucket_gets_the_branch_and_a_link(self, store: DeploymentStore, reporter: OutboxSender,
                                                  clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Bitbucket Cloud's status carries the branch as `refname`, Data Center's the full ref, both the page link."""
        api = queue(store, "api", SHA1, ref="refs/heads/main")
        console = queue(store, "console", SHA2, ref="refs/tags/v2")
        drain(reporter, clock, redis)
        assert fake.violations == []
        by_kind = {a.kind: a for a in fake.accepted}
        assert (by_kind["bitbucket"].repo, by_kind["bitbucket"].ref) == ("acme/api", "main")
        assert (by_kind["bitbucket-server"].repo, by_kind["bitbucket-server"].ref) == ("OPS/console", "refs/tags/v2")
        assert by_kind["bitbucket"].target_url == f"{PUBLIC_URL}/deployments/{api.id}"
        assert by_kind["bitbucket-server"].target_url == f"{PUBLIC_URL}/deployments/{console.id}"

    def test_gogs_has_no_status_api_so_nothing_is_sent(self, store: DeploymentStore, reporter: OutboxSender,
                                                       clock: FakeClock, redis: redis_lib.Redis,
                                                       fake: FakeGitHost) -> None:
        """A Gogs app's deployment sends no status even with a token: Gogs has no commit-status API."""
        dep = queue(store, "docs", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        assert drain(reporter, clock, redis) == 0
        assert fake.accepted == [] and fake.violations == []
        assert outbox_backlog(redis) == 0

    @pytest.mark.parametrize(("app", "kind", "context", "final"), [
        ("shop", "github", "deploy/shop", "failure"),
        ("wiki", "gitlab", "hooksvc/wiki", "failed"),
    ])
    def test_build_failure(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                           redis: redis_lib.Redis, fake: FakeGitHost, app: str, kind: str, context: str,
                           final: str) -> None:
        """A failed build ends `failure` (GitLab `failed`) with the first line of the error."""
        dep = queue(store, app, SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.FAILED, "compose build failed: exit 1\nStep 3/7 : RUN make\nmake: *** Error 2")
        drain(reporter, clock, redis)
        assert fake.statuses(kind, SHA1, context)[-1] == final
        assert fake.accepted[-1].description == f"Deployment {dep.id} failed: compose build failed: exit 1"

    def test_health_failure(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                            redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A failed health check ends `failure`, its long reason cut to GitHub's 140 characters."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha=SHA2)
        reason = "container shop-web-2 became unhealthy within 120s: " + "curl: (7) connection refused " * 10
        store.finish(dep.id, S.FAILED, reason)
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "failure"]
        description = fake.accepted[-1].description
        assert len(description) == 140
        assert description.endswith("…")
        assert fake.violations == []

    @pytest.mark.parametrize(("app", "kind", "context", "final"), [
        ("shop", "github", "deploy/shop", "error"),
        ("blog", "gitea", "hooksvc/blog", "error"),
        ("wiki", "gitlab", "hooksvc/wiki", "canceled"),
        ("api", "bitbucket", "hooksvc/api", "STOPPED"),
        ("console", "bitbucket-server", "hooksvc/console", "CANCELLED"),
    ])
    def test_superseded(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                        redis: redis_lib.Redis, fake: FakeGitHost, app: str, kind: str, context: str,
                        final: str) -> None:
        """A queued deployment replaced by a newer push ends with a final status naming the newer sha
        (Bitbucket has no pending state: a queued commit is INPROGRESS)."""
        old = queue(store, app, SHA1)
        new = queue(store, app, SHA2)
        drain(reporter, clock, redis)
        pending = "INPROGRESS" if kind.startswith("bitbucket") else "pending"
        assert fake.statuses(kind, SHA1, context) == [pending, final]
        assert fake.statuses(kind, SHA2, context) == [pending]
        description = [a for a in fake.accepted if a.sha == SHA1][-1].description
        assert description == f"Not deployed: superseded by {SHA2[:12]} (deployment {new.id})"
        assert store.get(old.id).state is DeploymentState.SUPERSEDED

    @pytest.mark.parametrize(("app", "kind", "context", "final"), [
        ("shop", "github", "deploy/shop", "error"),
        ("wiki", "gitlab", "hooksvc/wiki", "canceled"),
    ])
    def test_cancelled(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                       redis: redis_lib.Redis, fake: FakeGitHost, app: str, kind: str, context: str,
                       final: str) -> None:
        """A cancelled deployment's commit gets a final status saying so."""
        dep = queue(store, app, SHA1)
        store.cancel(dep.id)
        drain(reporter, clock, redis)
        assert fake.statuses(kind, SHA1, context) == ["pending", final]
        assert fake.accepted[-1].description == "Not deployed: cancelled by an operator"

    def test_worker_death(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                          redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A deployment ended `error` because its worker died still gets its final `error` status."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.ERROR, "the worker running this deployment died")
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "error"]
        assert fake.accepted[-1].description == f"Deployment {dep.id} error: the worker running this deployment died"

    @pytest.mark.parametrize(("app", "kind", "context", "final", "description"), [
        ("shop", "github", "deploy/shop", "success", "Skipped: stale: 1111111111 is an ancestor of the live sha"),
        ("blog", "gitea", "hooksvc/blog", "success", "Skipped: stale: 1111111111 is an ancestor of the live sha"),
        ("wiki", "gitlab", "hooksvc/wiki", "skipped", "Skipped: stale: 1111111111 is an ancestor of the live sha"),
    ])
    def test_skipped(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                     redis: redis_lib.Redis, fake: FakeGitHost, app: str, kind: str, context: str, final: str,
                     description: str) -> None:
        """A skipped deployment is `success` saying skipped and why on GitHub/Gitea, `skipped` on GitLab."""
        dep = queue(store, app, SHA1)
        store.start(dep.id, previous_sha=SHA2)
        store.finish(dep.id, S.SKIPPED, "stale: 1111111111 is an ancestor of the live sha")
        drain(reporter, clock, redis)
        assert fake.statuses(kind, SHA1, context)[-1] == final
        assert fake.accepted[-1].description == description

    def test_redeploy_of_the_same_sha_keeps_the_commits_order(self, store: DeploymentStore,
                                                              reporter: OutboxSender, clock: FakeClock,
                                                              redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Two deployments of one commit post in the order the state changes happened, so it ends right."""
        first = queue(store, "shop", SHA1)
        store.start(first.id, previous_sha="")
        second = store.intake.submit([NewDeployment("shop", SHA1, "refs/heads/main", Trigger.MANUAL, forced=True)])
        store.finish(first.id, S.SUCCEEDED, live_sha=SHA1)
        store.start(second.deployments[0].id, previous_sha=SHA1)
        store.finish(second.deployments[0].id, S.FAILED, "health check failed")
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "pending", "success",
                                                                "pending", "failure"]

    def test_unresolved_manual_sha_gets_only_the_final_status(self, store: DeploymentStore,
                                                              reporter: OutboxSender, clock: FakeClock,
                                                              redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A manual deployment by ref has no commit until the worker resolves it; then its final status is sent."""
        manual = NewDeployment("shop", "", "refs/heads/main", Trigger.MANUAL, forced=True)
        dep = store.intake.submit([manual]).deployments[0]
        store.start(dep.id, previous_sha="")
        redis.hset(f"hooksvc:deployment:{dep.id}", "sha", SHA3)  # what the worker records once it resolved the ref
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA3)
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA3, "deploy/shop") == ["success"]

    def test_a_host_without_token_gets_nothing(self, store: DeploymentStore, reporter: OutboxSender,
                                               clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Statuses of an app whose host has no token are dropped quietly and leave nothing behind."""
        dep = queue(store, "quiet", SHA1)
        store.cancel(dep.id)
        assert drain(reporter, clock, redis) == 0
        assert fake.accepted == []
        assert fake.violations == []

    def test_the_outbox_leaves_no_keys_behind(self, store: DeploymentStore, reporter: OutboxSender,
                                              clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Once everything is delivered, no lane, lock, retry record or due entry remains."""
        dep = queue(store, "shop", SHA1)
        fake.fail_next("github", 1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        drain(reporter, clock, redis)
        assert redis.keys(f"{keys.OUTBOX_PREFIX}:*") == []
        assert outbox_backlog(redis) == 0

    def test_the_event_is_written_with_the_state_change(self, store: DeploymentStore, redis: redis_lib.Redis) -> None:
        """The listener's event is in Redis as soon as the state change is, before any reporter runs."""
        dep = queue(store, "shop", SHA1)
        raw = redis.lrange(keys.outbox_lane(status_lane('shop', SHA1)), 0, -1)
        assert [json.loads(r)["state"] for r in raw] == ["queued"]
        assert json.loads(raw[0])["deployment_id"] == dep.id
        assert "token" not in raw[0].decode().lower()


class TestRetries:
    """A host that is down, slow or refusing never loses or reorders a commit's statuses."""

    def test_host_answering_500_then_ok(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                                        redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """After several 500s the statuses still arrive, all of them, in order, and the failures are counted."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        fake.fail_next("github", 4, status=500)
        start = clock.now
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "success"]
        assert fake.faults_served("github") == 4
        # Backoff doubled: 1 + 2 + 4 + 8 steps at rng=0.5 (three quarters of each step).
        assert clock.now - start == pytest.approx(0.75 * (1 + 2 + 4 + 8))
        metrics = read_counters(redis)
        assert metrics[keys.STATUS_FAILURES] == {"github": 4}
        assert metrics[keys.STATUS_SENT] == {"github": 3}
        text = log_of(store, dep.id)
        assert "attempt 4 failed (HTTP 500" in text
        assert "retrying in" in text

    def test_a_failing_status_holds_back_the_later_ones(self, store: DeploymentStore, reporter: OutboxSender,
                                                        clock: FakeClock, redis: redis_lib.Redis,
                                                        fake: FakeGitHost) -> None:
        """While the first status is being retried, the later ones of that commit wait behind it."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        fake.fail_next("github", 1, status=503)
        reporter.run_once()
        assert fake.accepted == []
        reporter.run_once()  # not due yet: nothing is sent out of turn
        assert fake.accepted == []
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "success"]

    def test_hanging_host(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                          redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Requests that get no answer time out on the client side and are retried, in order."""
        dep = queue(store, "wiki", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.FAILED, "build failed")
        fake.hang_next("gitlab", 2)
        started = time.monotonic()
        drain(reporter, clock, redis)
        assert time.monotonic() - started < 2.0
        assert fake.statuses("gitlab", SHA1, "hooksvc/wiki") == ["pending", "running", "failed"]
        assert "no answer within 0.25s" in log_of(store, dep.id)

    def test_rejected_status_is_not_retried(self, store: DeploymentStore, reporter: OutboxSender,
                                            clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A 422 drops that status at once (logged and counted); the commit's later statuses go on."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        fake.fail_next("github", 1, status=422)
        drain(reporter, clock, redis)
        assert fake.faults_served("github") == 1
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "success"]
        assert read_counters(redis)[keys.STATUS_DROPPED] == {"github": 1}
        assert "HTTP 422: {\"message\": \"injected 422\"}; not retried" in log_of(store, dep.id)

    def test_contract_violation_is_not_retried_forever(self, tmp_path: Path, store: DeploymentStore,
                                                       clock: FakeClock, redis: redis_lib.Redis,
                                                       fake: FakeGitHost, redis_url: str) -> None:
        """A request the host refuses as invalid (wrong API path) is tried once, not again and again."""
        broken = reporting_config(tmp_path, fake.url + "/wrong-prefix", redis_url)
        rep = OutboxSender(broken, redis, sleep=clock.sleep, clock=clock, rng=lambda: 0.5,
                             http_timeout=CLIENT_TIMEOUT)
        queue(store, "shop", SHA1)
        drain(rep, clock, redis)
        assert len(fake.violations) == 1
        assert read_counters(redis)[keys.STATUS_DROPPED] == {"github": 1}

    def test_obsolete_pending_is_given_up_when_a_newer_status_waits(self, store: DeploymentStore,
                                                                     reporter: OutboxSender, clock: FakeClock,
                                                                     redis: redis_lib.Redis,
                                                                     fake: FakeGitHost) -> None:
        """A pending status failing longer than REPORT_RETRY_SECONDS is dropped once the final one waits."""
        dep = queue(store, "shop", SHA1)
        fake.fail_next("github", 10_000)
        for _ in range(5):
            reporter.run_once()
            clock.sleep(defaults.REPORT_BACKOFF_MAX_SECONDS)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        lane = keys.outbox_lane(status_lane('shop', SHA1))
        start = clock.now
        while redis.llen(lane) > 1:
            reporter.run_once()
            clock.sleep(defaults.REPORT_BACKOFF_MAX_SECONDS)
            assert clock.now - start < 3 * defaults.REPORT_RETRY_SECONDS
        # Each of the two pendings was given up REPORT_RETRY_SECONDS after its own first failure.
        assert clock.now - start >= defaults.REPORT_RETRY_SECONDS
        fake.clear_faults()
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["success"]
        assert "a newer status of this commit is waiting" in log_of(store, dep.id)

    def test_final_status_survives_a_long_outage(self, store: DeploymentStore, reporter: OutboxSender,
                                                 clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A host down for three hours still ends with the final status once it is back."""
        dep = queue(store, "blog", SHA1)
        store.cancel(dep.id)
        fake.fail_next("gitea", 10_000, status=502)
        start = clock.now
        while clock.now - start < 3 * 3600:
            reporter.run_once()
            clock.now = float(redis.zrange(keys.OUTBOX_DUE, 0, 0, withscores=True)[0][1])
        fake.clear_faults()
        drain(reporter, clock, redis)
        assert fake.statuses("gitea", SHA1, "hooksvc/blog")[-1] == "error"

    def test_final_status_is_bounded_too(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                                         redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """After FINAL_STATUS_RETRY_SECONDS of failures even a final status is given up, and counted."""
        dep = queue(store, "blog", SHA1)
        store.cancel(dep.id)
        fake.fail_next("gitea", 4, status=500)
        reporter.run_once()  # pending fails; retried
        clock.sleep(FINAL_STATUS_RETRY_SECONDS + 1)
        reporter.run_once()  # pending fails past the bound: dropped (the final waits); final fails: retried
        clock.sleep(FINAL_STATUS_RETRY_SECONDS + 1)
        reporter.run_once()  # final fails past its own bound: dropped
        assert outbox_backlog(redis) == 0
        assert read_counters(redis)[keys.STATUS_DROPPED] == {"gitea": 2}
        assert "gave up after" in log_of(store, dep.id)

    def test_a_dead_reporters_lane_is_taken_over(self, store: DeploymentStore, reporter: OutboxSender,
                                                 clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A lane whose reporter died mid-delivery waits for its lease to run out, then nothing is lost."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        redis.set(keys.outbox_lock(status_lane("shop", SHA1)), "dead-sender", px=300)
        reporter.run_once()
        assert fake.accepted == []
        time.sleep(0.35)
        drain(reporter, clock, redis)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "pending", "success"]

    def test_concurrent_reporters_send_each_status_once_in_order(self, cfg: Config, store: DeploymentStore,
                                                                 redis: redis_lib.Redis, fake: FakeGitHost,
                                                                 redis_url: str) -> None:
        """Four reporters racing over the same outbox deliver every status exactly once, each commit in order."""
        shas = [f"{i:040x}" for i in range(1, 13)]
        for sha in shas:
            dep = queue(store, "blog", sha)
            store.start(dep.id, previous_sha="")
            store.finish(dep.id, S.SUCCEEDED, live_sha=sha)
        reporters = [OutboxSender(cfg, redis_lib.Redis.from_url(redis_url), http_timeout=2.0) for _ in range(4)]
        barrier = threading.Barrier(len(reporters))

        def work(rep: OutboxSender) -> None:
            barrier.wait()
            while outbox_backlog(redis):
                rep.run_once()

        threads = [threading.Thread(target=work, args=(r,)) for r in reporters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        for sha in shas:
            assert fake.statuses("gitea", sha, "hooksvc/blog") == ["pending", "pending", "success"]
        assert len(fake.accepted) == 3 * len(shas)


class TestSenderThread:
    def test_the_worker_runtime_delivers_and_stops(self, cfg: Config, store: DeploymentStore,
                                                   redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """A worker's runtime delivers in the background (daemon threads) and ends them when stopped."""
        runtime = WorkerRuntime(cfg, redis)
        runtime.start()
        assert "hooksvc-outbox" in {t.name for t in runtime.threads}
        assert all(t.daemon for t in runtime.threads)
        dep = queue(store, "shop", SHA1)
        # The runtime's own dispatcher may take the intake entry first: cancelling before it wrote the
        # job would (rightly) leave the commit without a pending status.
        deadline = time.monotonic() + 30  # generous: a loaded CI machine may be slow to schedule the thread
        while fake.statuses("github", SHA1, "deploy/shop") != ["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        store.cancel(dep.id)
        while len(fake.statuses("github", SHA1, "deploy/shop")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        runtime.stop()
        assert not any(t.is_alive() for t in runtime.threads)
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "error"]

    def test_the_loop_survives_a_redis_outage(self, cfg: Config, clock: FakeClock) -> None:
        """run_forever waits out an unreachable Redis instead of dying."""
        dead = redis_lib.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.1)
        stop = threading.Event()
        naps: list[float] = []

        def sleep(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) >= 3:
                stop.set()

        OutboxSender(cfg, dead, sleep=sleep, clock=clock, rng=lambda: 0.5).run_forever(stop)
        assert naps == [0.75, 1.5, 3.0]


class TestNotifications:
    """Finished deployments are announced, signed, retried, and no secret reaches a log."""

    def test_webhook_is_signed(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                               redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """The generic webhook carries the deployment and a valid HMAC-SHA256 of its raw body."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.FAILED, "health check failed: web")
        drain(reporter, clock, redis)
        assert fake.violations == []
        [hook] = [n for n in fake.notifications if n.kind == "notify"]
        assert hook.json == {"app": "shop", "deployment_id": dep.id, "sha": SHA1, "ref": "refs/heads/main",
                             "state": "failed", "error": "health check failed: web",
                             "url": f"{PUBLIC_URL}/deployments/{dep.id}"}
        assert notify.verify_signature(hook.raw, NOTIFY_SECRET, hook.headers["x-hooksvc-signature-256"])
        assert hook.headers["x-hooksvc-event"] == "deployment"
        assert read_counters(redis)[keys.NOTIFY_SENT] == {"webhook": 1, "slack": 1}

    def test_slack_body(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                        redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """The Slack-compatible webhook gets one `{"text": ...}` message with state and link."""
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.SUCCEEDED, live_sha=SHA1)
        drain(reporter, clock, redis)
        [slack] = [n for n in fake.notifications if n.kind == "slack"]
        assert slack.json == {"text": f":white_check_mark: shop: deployment {dep.id} of `{SHA1[:12]}` succeeded "
                                      f"(<{PUBLIC_URL}/deployments/{dep.id}|details>)"}

    def test_only_final_states_notify(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                                      redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """Queued and running send no notification; superseded, like every final state, does."""
        queue(store, "shop", SHA1)
        drain(reporter, clock, redis)
        assert fake.notifications == []
        queue(store, "shop", SHA2)
        drain(reporter, clock, redis)
        assert sorted(n.kind for n in fake.notifications) == ["notify", "slack"]
        [hook] = [n for n in fake.notifications if n.kind == "notify"]
        assert (hook.json["sha"], hook.json["state"]) == (SHA1, "superseded")

    def test_apps_without_targets_send_nothing(self, store: DeploymentStore, reporter: OutboxSender,
                                               clock: FakeClock, redis: redis_lib.Redis, fake: FakeGitHost) -> None:
        """An app with no notify_url and no slack_url announces nothing."""
        dep = queue(store, "blog", SHA1)
        store.cancel(dep.id)
        drain(reporter, clock, redis)
        assert fake.notifications == []

    def test_notifications_are_retried_independently(self, store: DeploymentStore, reporter: OutboxSender,
                                                     clock: FakeClock, redis: redis_lib.Redis,
                                                     fake: FakeGitHost) -> None:
        """A failing Slack is retried on its own; the webhook and the statuses do not wait for it."""
        dep = queue(store, "shop", SHA1)
        store.cancel(dep.id)
        fake.fail_next("slack", 3, status=500)
        reporter.run_once()
        assert [n.kind for n in fake.notifications] == ["notify"]
        assert fake.statuses("github", SHA1, "deploy/shop") == ["pending", "error"]
        drain(reporter, clock, redis)
        assert sorted(n.kind for n in fake.notifications) == ["notify", "slack"]

    def test_no_secret_in_any_log(self, store: DeploymentStore, reporter: OutboxSender, clock: FakeClock,
                                  redis: redis_lib.Redis, fake: FakeGitHost, caplog: pytest.LogCaptureFixture) -> None:
        """Failures of every target are logged without tokens, the notify secret or the Slack URL."""
        caplog.set_level(logging.DEBUG)
        dep = queue(store, "shop", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.ERROR, "internal error")
        for route in ("github", "notify", "slack"):
            fake.fail_next(route, 2, status=500)
        fake.hang_next("slack", 1)
        drain(reporter, clock, redis)
        text = log_of(store, dep.id) + "\n" + caplog.text
        assert "Slack notification: attempt" in text
        for secret in (*TOKENS.values(), NOTIFY_SECRET, "slack-url-secret", SLACK_PATH):
            assert secret not in text

    def test_a_secret_in_an_error_never_reaches_the_host(self, store: DeploymentStore, reporter: OutboxSender,
                                                         clock: FakeClock, redis: redis_lib.Redis,
                                                         fake: FakeGitHost) -> None:
        """A token that slipped into a deployment's error is masked in the status description."""
        dep = queue(store, "blog", SHA1)
        store.start(dep.id, previous_sha="")
        store.finish(dep.id, S.ERROR, f"clone failed: https://x:{TOKENS['gitlab']}@git.example.com/a.git")
        drain(reporter, clock, redis)
        assert fake.accepted[-1].description == f"Deployment {dep.id} error: clone failed: https://***@git.example.com/a.git"

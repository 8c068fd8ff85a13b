"""`/metrics`: counters kept in a real Redis, read by every web process at scrape time."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from hooksvc import keys
from hooksvc.config import Config
from hooksvc.counters import DURATION_BUCKETS, count_final_state, duration_bucket, record_webhook
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import DeploymentStore, StateListener
from hooksvc.web import create_app
from hooksvc.web.metrics import histogram_buckets
from tests.helpers.config import make_config
from tests.helpers.redis_server import RedisServer

SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40
#: Outage tests fail fast instead of waiting through redis-py's default retries.
NO_RETRY = Retry(NoBackoff(), 0)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def web_app(config: Config, connection: redis_lib.Redis, listeners: list[StateListener]) -> Flask:
    """`create_app` with the given listeners; it serves /metrics itself."""
    return create_app(config, connection=connection, listeners=listeners)


def scrape(app: Flask, accept: str = "") -> Samples:
    """Every sample of one `/metrics` answer, keyed by name and sorted labels."""
    resp = app.test_client().get("/metrics", headers={"Accept": accept} if accept else {})
    assert resp.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def store(redis: redis_lib.Redis) -> DeploymentStore:
    return DeploymentStore(redis, listeners=[count_final_state])


@pytest.fixture
def app(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    return web_app(make_config(tmp_path), connection=redis, listeners=[count_final_state])


def deploy(store: DeploymentStore, app: str, sha: str, end: DeploymentState | None) -> str:
    """Submit, start and (unless `end` is None) finish one deployment; returns its id."""
    dep = store.intake.submit([NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, "")
    if end is not None:
        store.finish(dep.id, end, live_sha=sha if end is DeploymentState.SUCCEEDED else None)
    return dep.id


def backdate_start(redis: redis_lib.Redis, deployment_id: str, seconds: float) -> None:
    """Make a running deployment look as if it started `seconds` ago, to get a known duration."""
    started = float(redis.hget(f"hooksvc:deployment:{deployment_id}", "started_at") or 0)
    redis.hset(f"hooksvc:deployment:{deployment_id}", "started_at", str(started - seconds))


class TestDeploymentCounters:
    def test_final_states_are_counted_per_app(self, app: Flask, store: DeploymentStore) -> None:
        """Each deployment that ends adds one to `hooksvc_deployments_total{app,state}`."""
        deploy(store, "shop", SHA_A, DeploymentState.SUCCEEDED)
        deploy(store, "shop", SHA_B, DeploymentState.SUCCEEDED)
        deploy(store, "shop", SHA_C, DeploymentState.FAILED)
        deploy(store, "blog", SHA_A, DeploymentState.ERROR)
        samples = scrape(app)
        assert value(samples, "hooksvc_deployments_total", app="shop", state="succeeded") == 2
        assert value(samples, "hooksvc_deployments_total", app="shop", state="failed") == 1
        assert value(samples, "hooksvc_deployments_total", app="blog", state="error") == 1
        assert value(samples, "hooksvc_deployments_total", app="blog", state="succeeded") == 0

    def test_superseded_and_cancelled_count_but_have_no_duration(
        self, app: Flask, store: DeploymentStore
    ) -> None:
        """Deployments that never ran count in their final state and stay out of the duration histogram."""
        first = store.intake.submit([NewDeployment("shop", SHA_A, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        second = store.intake.submit([NewDeployment("shop", SHA_B, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        store.cancel(second.id)
        samples = scrape(app)
        assert store.get(first.id).state is DeploymentState.SUPERSEDED
        assert value(samples, "hooksvc_deployments_total", app="shop", state="superseded") == 1
        assert value(samples, "hooksvc_deployments_total", app="shop", state="cancelled") == 1
        assert value(samples, "hooksvc_deployment_duration_seconds_count", app="shop") == 0

    def test_a_state_change_is_counted_once(self, app: Flask, store: DeploymentStore) -> None:
        """Finishing an already finished deployment changes nothing, so it is not counted again."""
        dep_id = deploy(store, "shop", SHA_A, DeploymentState.SUCCEEDED)
        assert store.finish(dep_id, DeploymentState.FAILED) is None
        samples = scrape(app)
        assert value(samples, "hooksvc_deployments_total", app="shop", state="succeeded") == 1
        assert value(samples, "hooksvc_deployments_total", app="shop", state="failed") == 0

    def test_running_and_queued_are_gauges(self, app: Flask, store: DeploymentStore) -> None:
        """`hooksvc_deployments_running` and `hooksvc_queue_depth` show what is running and waiting now."""
        deploy(store, "shop", SHA_A, None)
        store.intake.submit([NewDeployment("shop", SHA_B, "refs/heads/main", Trigger.PUSH)])
        store.intake.submit([NewDeployment("blog", SHA_B, "refs/tags/v1", Trigger.PUSH)])
        samples = scrape(app)
        assert value(samples, "hooksvc_deployments_running") == 1
        # The started deployment's job was taken by no worker here, so all three jobs wait in RQ.
        assert value(samples, "hooksvc_queue_depth") == store.queue.count == 3
        assert value(samples, "hooksvc_deployments_total", app="shop", state="running") == 0


class TestDurationHistogram:
    def test_durations_fall_into_cumulative_buckets(
        self, app: Flask, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """A deployment's start-to-finish time lands in every bucket at or above it, and in sum and count."""
        for sha, seconds in ((SHA_A, 7.0), (SHA_B, 45.0), (SHA_C, 45.0)):
            dep_id = deploy(store, "shop", sha, None)
            backdate_start(redis, dep_id, seconds)
            store.finish(dep_id, DeploymentState.SUCCEEDED, live_sha=sha)
        samples = scrape(app)
        bucket = "hooksvc_deployment_duration_seconds_bucket"
        assert value(samples, bucket, app="shop", le="5.0") == 0
        assert value(samples, bucket, app="shop", le="10.0") == 1
        assert value(samples, bucket, app="shop", le="30.0") == 1
        assert value(samples, bucket, app="shop", le="60.0") == 3
        assert value(samples, bucket, app="shop", le="+Inf") == 3
        assert value(samples, "hooksvc_deployment_duration_seconds_count", app="shop") == 3
        assert value(samples, "hooksvc_deployment_duration_seconds_sum", app="shop") == pytest.approx(97.0, abs=0.5)

    def test_failed_deployments_that_ran_are_timed_too(self, app: Flask, store: DeploymentStore) -> None:
        """The histogram covers every deployment that started, whatever its outcome."""
        deploy(store, "wiki", SHA_A, DeploymentState.FAILED)
        assert value(scrape(app), "hooksvc_deployment_duration_seconds_count", app="wiki") == 1

    def test_bucket_choice_and_cumulation(self) -> None:
        """Each duration gets the smallest bound that holds it; the exposition adds up the buckets below."""
        assert duration_bucket(0.0) == DURATION_BUCKETS[0]
        assert duration_bucket(10.0) == 10.0
        assert duration_bucket(10.5) == 30.0
        assert duration_bucket(1e9) == math.inf
        assert histogram_buckets({10.0: 1, 7.0: 2}, (5.0, 10.0, math.inf)) == [("5.0", 0), ("10.0", 3), ("+Inf", 3)]


class TestWebhookCounter:
    def test_each_outcome_is_counted_per_provider(self, app: Flask, redis: redis_lib.Redis) -> None:
        """record_webhook adds one to `hooksvc_webhooks_total{provider,outcome}` per call."""
        for _ in range(3):
            record_webhook(redis, "github", "accepted")
        record_webhook(redis, "github", "duplicate")
        record_webhook(redis, "gitlab", "unauthorized")
        record_webhook(redis, "gitea", "too_large")
        samples = scrape(app)
        assert value(samples, "hooksvc_webhooks_total", provider="github", outcome="accepted") == 3
        assert value(samples, "hooksvc_webhooks_total", provider="github", outcome="duplicate") == 1
        assert value(samples, "hooksvc_webhooks_total", provider="gitlab", outcome="unauthorized") == 1
        assert value(samples, "hooksvc_webhooks_total", provider="gitea", outcome="too_large") == 1

    def test_an_unknown_route_does_not_become_a_label(self, app: Flask, redis: redis_lib.Redis) -> None:
        """A caller-chosen /hooks/<route> is counted as provider "unknown", so it cannot create new series."""
        record_webhook(redis, "evil<script>", "bad_request")
        samples = scrape(app)
        assert value(samples, "hooksvc_webhooks_total", provider="unknown", outcome="bad_request") == 1
        assert not any("evil" in str(labels) for _, labels in samples)

    def test_hash_layout_is_outcome_then_provider(self, redis: redis_lib.Redis) -> None:
        """The webhook counter's Redis layout is `<outcome>:<provider>`, as the module docstring says."""
        record_webhook(redis, "gitlab", "ping")
        assert redis.hgetall(keys.WEBHOOKS) == {b"ping:gitlab": b"1"}

    def test_redis_down_never_raises(self) -> None:
        """When Redis is unreachable the count is lost quietly: the webhook answers 503 on its own terms."""
        dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=NO_RETRY)
        record_webhook(dead, "github", "unavailable")


class TestReporterCounters:
    def test_status_post_failures_are_read_from_the_reporters_hash(
        self, app: Flask, redis: redis_lib.Redis
    ) -> None:
        """The reporter's HINCRBY on `hooksvc:metrics:status_failures` shows as `hooksvc_status_post_failures_total`."""
        redis.hincrby(keys.STATUS_FAILURES, "github", 4)
        redis.hincrby(keys.STATUS_FAILURES, "gitlab", 1)
        redis.hincrby("hooksvc:metrics:notify_sent", "slack", 2)
        samples = scrape(app)
        assert value(samples, "hooksvc_status_post_failures_total", host_kind="github") == 4
        assert value(samples, "hooksvc_status_post_failures_total", host_kind="gitlab") == 1
        assert value(samples, "hooksvc_notifications_total", target="slack") == 2


class TestScrape:
    def test_no_token_is_needed(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """`/metrics` answers without a token even when the pages and API need one."""
        app = web_app(make_config(tmp_path), connection=redis, listeners=[])
        assert app.test_client().get("/metrics").status_code == 200
        assert app.test_client().get("/api/apps").status_code == 401

    def test_plain_text_format_by_default_and_openmetrics_on_request(self, app: Flask) -> None:
        """A plain scrape gets text format 0.0.4; a scraper asking for OpenMetrics gets it, ending in # EOF."""
        client = app.test_client()
        plain = client.get("/metrics")
        assert plain.content_type.startswith("text/plain; version=0.0.4")
        assert "# TYPE hooksvc_webhooks_total counter" in plain.get_data(as_text=True)
        om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.content_type.startswith("application/openmetrics-text")
        assert om.get_data(as_text=True).endswith("# EOF\n")

    def test_empty_redis_gives_zero_gauges(self, app: Flask) -> None:
        """Before anything happened the gauges read 0 and Redis is reported up."""
        samples = scrape(app)
        assert value(samples, "hooksvc_redis_up") == 1
        assert value(samples, "hooksvc_queue_depth") == 0
        assert value(samples, "hooksvc_deployments_running") == 0

    def test_known_series_start_at_zero(self, app: Flask) -> None:
        """Every route × outcome and configured app × final state is exported at 0 before its first event."""
        samples = scrape(app)
        assert samples[("hooksvc_webhooks_total", (("outcome", "too_large"), ("provider", "gitlab")))] == 0
        assert samples[("hooksvc_deployments_total", (("app", "wiki"), ("state", "failed")))] == 0
        assert samples[("hooksvc_deployment_duration_seconds_count", (("app", "blog"),))] == 0
        assert not any(labels == (("app", "wiki"), ("state", "running")) for _, labels in samples)

    def test_redis_down_still_answers(self, tmp_path: Path) -> None:
        """With Redis gone `/metrics` still answers 200 with `hooksvc_redis_up 0` rather than a 500."""
        server = RedisServer(tmp_path)
        server.start()
        try:
            conn = redis_lib.Redis(port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=NO_RETRY)
            app = web_app(make_config(tmp_path), connection=conn, listeners=[])
            assert value(scrape(app), "hooksvc_redis_up") == 1
        finally:
            server.stop()
        samples = scrape(app)
        assert value(samples, "hooksvc_redis_up") == 0
        assert ("hooksvc_deployments_running", ()) not in samples

    def test_the_default_registry_is_untouched(self, app: Flask) -> None:
        """The collector lives in the app's own registry: the process-global registry never sees hooksvc metrics."""
        from prometheus_client import REGISTRY, generate_latest

        scrape(app)
        assert b"hooksvc_" not in generate_latest(REGISTRY)


class TestManyProcesses:
    def test_two_web_processes_report_the_same_totals(
        self, tmp_path: Path, redis_url: str, store: DeploymentStore
    ) -> None:
        """Two Flask apps (two web processes) sharing Redis see every process's counts, and agree."""
        config = make_config(tmp_path)
        web_1 = web_app(config, connection=redis_lib.Redis.from_url(redis_url), listeners=[count_final_state])
        web_2 = web_app(config, connection=redis_lib.Redis.from_url(redis_url), listeners=[count_final_state])
        # Each web process counts the webhook it answered, on its own connection.
        record_webhook(web_1.extensions["hooksvc"].store.redis, "github", "accepted")
        record_webhook(web_2.extensions["hooksvc"].store.redis, "github", "accepted")
        # A worker process (its own store and connection) ends deployments.
        deploy(store, "shop", SHA_A, DeploymentState.SUCCEEDED)
        deploy(store, "blog", SHA_B, DeploymentState.FAILED)
        first, second = scrape(web_1), scrape(web_2)
        assert first == second
        assert value(first, "hooksvc_webhooks_total", provider="github", outcome="accepted") == 2
        assert value(first, "hooksvc_deployments_total", app="shop", state="succeeded") == 1
        assert value(first, "hooksvc_deployments_total", app="blog", state="failed") == 1
        assert value(first, "hooksvc_deployment_duration_seconds_count", app="shop") == 1

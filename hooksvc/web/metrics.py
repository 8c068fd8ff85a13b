"""Prometheus metrics at `GET /metrics`, read from the counters every process keeps in Redis.

Web processes, workers and the outbox sender write their counters into Redis hashes
(`hooksvc.counters`, names in `hooksvc.keys`); a custom collector reads them all at scrape time.
So any web process answers a scrape with the totals of all processes, and a restarted process
loses nothing. Each Flask app gets its own `CollectorRegistry`: the global default registry would
mix in whatever else the process imported, and tests build many apps.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from hooksvc import keys
from hooksvc.counters import DURATION_BUCKETS, WEBHOOK_OUTCOMES, bound_text
from hooksvc.deployments import FINAL_STATES
from hooksvc.providers import PROVIDERS
from hooksvc.store import DeploymentStore
from hooksvc.web.context import context

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

#: `app.extensions` key of the app's own metrics registry.
EXTENSION = "hooksvc.metrics"

#: (metric name, help, Redis hash, label) of the outbox sender's counters.
_OUTBOX_COUNTERS = (
    ("hooksvc_status_posts", "Commit statuses delivered to the git host.", keys.STATUS_SENT, "host_kind"),
    ("hooksvc_status_post_failures", "Failed commit-status POST attempts (retried or not).",
     keys.STATUS_FAILURES, "host_kind"),
    ("hooksvc_statuses_dropped", "Commit statuses given up on (rejected, obsolete or out of retry time).",
     keys.STATUS_DROPPED, "host_kind"),
    ("hooksvc_notifications", "Finish notifications delivered.", keys.NOTIFY_SENT, "target"),
    ("hooksvc_notification_failures", "Failed notification attempts (retried or not).",
     keys.NOTIFY_FAILURES, "target"),
    ("hooksvc_notifications_dropped", "Notifications given up on.", keys.NOTIFY_DROPPED, "target"),
    ("hooksvc_host_deployment_requests", "Deployment API requests (create, status) delivered to the git host.",
     keys.HOST_DEPLOYMENT_SENT, "host_kind"),
    ("hooksvc_host_deployment_request_failures", "Failed deployment API attempts (retried or not).",
     keys.HOST_DEPLOYMENT_FAILURES, "host_kind"),
    ("hooksvc_host_deployment_requests_dropped", "Deployment API requests given up on.",
     keys.HOST_DEPLOYMENT_DROPPED, "host_kind"),
    ("hooksvc_check_run_requests", "Check-run requests (create, update) delivered to the git host.",
     keys.CHECK_RUN_SENT, "host_kind"),
    ("hooksvc_check_run_request_failures", "Failed check-run attempts (retried or not).",
     keys.CHECK_RUN_FAILURES, "host_kind"),
    ("hooksvc_check_run_requests_dropped", "Check-run requests given up on.", keys.CHECK_RUN_DROPPED, "host_kind"),
    ("hooksvc_preview_comment_requests", "Preview comment requests (find, create, edit) delivered to the git host.",
     keys.PREVIEW_COMMENT_SENT, "host_kind"),
    ("hooksvc_preview_comment_request_failures", "Failed preview comment attempts (retried or not).",
     keys.PREVIEW_COMMENT_FAILURES, "host_kind"),
    ("hooksvc_preview_comment_requests_dropped", "Preview comment requests given up on.",
     keys.PREVIEW_COMMENT_DROPPED, "host_kind"),
)


# -- reading (at scrape time) ----------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _parse_bound(text: str) -> float:
    return math.inf if text == "+Inf" else float(text)


def histogram_buckets(stored: dict[float, int], bounds: Sequence[float] = DURATION_BUCKETS) -> list[tuple[str, int]]:
    """Cumulative `(le, count)` pairs from the per-bucket counts stored in Redis.

    A stored bound that is no longer in `bounds` (the buckets changed between versions) still
    counts towards every larger bound, so the cumulative counts stay correct.
    """
    return [(bound_text(b), sum(n for le, n in stored.items() if le <= b)) for b in bounds]


class RedisCollector:
    """Reads every hooksvc counter from Redis at scrape time, in one round trip.

    Every known label combination (each route and outcome; each configured app and final state)
    is exported from the start, at 0, so that `rate()` and `increase()` see the first event.
    """

    def __init__(self, store: DeploymentStore, apps: Sequence[str] = ()) -> None:
        self.store = store
        self.apps = tuple(apps)

    def collect(self) -> Iterator[Metric]:
        try:
            replies = self._read()
        except redis.RedisError as exc:
            log.warning("/metrics: Redis is unreachable: %s", exc)
            yield _redis_up(False)
            return
        yield _redis_up(True)
        yield from self._families(*replies)

    def _read(self) -> list[Any]:
        with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.WEBHOOKS)
            pipe.hgetall(keys.DEPLOYMENTS)
            pipe.hgetall(keys.DEPLOYMENT_DURATION)
            pipe.llen(self.store.queue.key)
            pipe.scard(keys.RUNNING)
            pipe.zcard(keys.OUTBOX_DUE)
            for _, _, key, _ in _OUTBOX_COUNTERS:
                pipe.hgetall(key)
            return pipe.execute()  # type: ignore[no-any-return]

    def _families(
        self,
        webhooks: dict[Any, Any],
        deployments: dict[Any, Any],
        durations: dict[Any, Any],
        queue_depth: int,
        running: int,
        backlog: int,
        *reporter: dict[Any, Any],
    ) -> Iterator[Metric]:
        yield _labelled_counter(
            "hooksvc_webhooks", "Webhook requests by git host route and outcome.", ["provider", "outcome"],
            [(provider, outcome) for provider in PROVIDERS for outcome in WEBHOOK_OUTCOMES], webhooks,
        )
        yield _labelled_counter(
            "hooksvc_deployments", "Deployments that ended, by app and final state.", ["app", "state"],
            [(app, str(state)) for app in self.apps for state in FINAL_STATES], deployments,
        )

        yield _duration_histogram(_hash(durations), self.apps)

        yield GaugeMetricFamily("hooksvc_queue_depth", "Deployment jobs waiting in the RQ queue.", value=queue_depth)
        yield GaugeMetricFamily("hooksvc_deployments_running", "Deployments running now.", value=running)
        yield GaugeMetricFamily(
            "hooksvc_report_backlog_lanes", "Status/notification lanes holding undelivered events.", value=backlog
        )
        for (name, help_text, _, label), raw in zip(_OUTBOX_COUNTERS, reporter, strict=True):
            family = CounterMetricFamily(name, help_text, labels=[label])
            for value, count in sorted(_hash(raw).items()):
                family.add_metric([value], int(count))
            yield family


def _redis_up(up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily("hooksvc_redis_up", "1 when this scrape could read Redis, else 0.", value=int(up))


def _labelled_counter(
    name: str, documentation: str, labels: list[str], known: list[tuple[str, str]], raw: dict[Any, Any]
) -> CounterMetricFamily:
    """A counter from a Redis hash of `"<second label>:<first label>"` fields, every `known` pair
    reported (0 until counted) and pairs counted for others (an app no longer configured) as well."""
    counts = dict.fromkeys(known, 0)
    for field, count in _hash(raw).items():
        second, _, first = field.partition(":")
        counts[first, second] = int(count)
    family = CounterMetricFamily(name, documentation, labels=labels)
    for pair, n in sorted(counts.items()):
        family.add_metric(list(pair), n)
    return family


def _duration_histogram(fields: dict[str, str], apps: Sequence[str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "hooksvc_deployment_duration_seconds",
        "Time from start to finish of deployments that ran, by app.",
        labels=["app"],
    )
    buckets: dict[str, dict[float, int]] = defaultdict(dict)
    sums: dict[str, float] = {}
    for field, value in fields.items():
        kind, _, rest = field.partition(":")
        if kind == "bucket":
            bound, _, app = rest.partition(":")
            buckets[app][_parse_bound(bound)] = int(value)
        elif kind == "sum":
            sums[rest] = float(value)
    for app in sorted(buckets.keys() | sums.keys() | set(apps)):
        family.add_metric([app], histogram_buckets(buckets[app]), sums.get(app, 0.0))
    return family


def registry_for(store: DeploymentStore, apps: Sequence[str] = ()) -> CollectorRegistry:
    """A registry of its own holding the Redis collector (never the process-global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(store, apps))
    return registry


def _app_registry() -> CollectorRegistry:
    registry: CollectorRegistry | None = current_app.extensions.get(EXTENSION)
    if registry is None:
        ctx = context()
        registry = current_app.extensions.setdefault(EXTENSION, registry_for(ctx.store, sorted(ctx.config.apps)))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; no token, and an answer even when Redis is down (`hooksvc_redis_up 0`)."""
    # Negotiated like prometheus-client's own exporter: OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(_app_registry()), content_type=content_type)


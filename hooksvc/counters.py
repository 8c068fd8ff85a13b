"""The counters behind `/metrics`, kept in Redis so every web and worker process adds up.

Each is a HINCRBY on a hash named in `hooksvc.keys`: webhook outcomes by the web side (or the
submit script itself), final states and durations by `count_final_state` inside each state
change's transaction, statuses and notifications by the outbox sender. `hooksvc.web.metrics`
reads them all at scrape time.
"""

from __future__ import annotations

import logging
import math

import redis
from redis.client import Pipeline

from hooksvc import keys
from hooksvc.deployments import Deployment
from hooksvc.providers import PROVIDERS

log = logging.getLogger("hooksvc.counters")

#: What a webhook request can come to; one count per request.
WEBHOOK_OUTCOMES = (
    "accepted", "duplicate", "ignored", "ping", "unauthorized", "bad_request", "too_large", "unavailable",
)
#: Label for a request to an unknown /hooks/<route>: the route is caller-chosen, so it must not
#: become a label value (an attacker could otherwise create unbounded series).
UNKNOWN_PROVIDER = "unknown"
#: Deployments take from seconds (nothing to rebuild) to the 30-minute job timeout; these bounds
#: separate "cached build", "normal build" and "slow health gate" without too many series per app.
DURATION_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, math.inf)


def record_webhook(connection: redis.Redis, provider: str, outcome: str) -> None:
    """Count one webhook request; never raises, so a Redis outage cannot fail the webhook twice."""
    if provider not in PROVIDERS:
        provider = UNKNOWN_PROVIDER
    if outcome not in WEBHOOK_OUTCOMES:
        log.warning("webhook outcome %r is not one of %s; counted anyway", outcome, ", ".join(WEBHOOK_OUTCOMES))
    try:
        connection.hincrby(keys.WEBHOOKS, f"{outcome}:{provider}", 1)
    except redis.RedisError as exc:
        log.debug("webhook %s/%s not counted: %s", provider, outcome, exc)


def duration_bucket(seconds: float) -> float:
    """The smallest histogram bound that holds `seconds`."""
    return next(b for b in DURATION_BUCKETS if seconds <= b)


def bound_text(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`+Inf` for the last)."""
    return "+Inf" if math.isinf(bound) else repr(bound)


def count_final_state(pipe: Pipeline, deployment: Deployment) -> None:
    """Store listener: count a final state and, for a deployment that ran, its duration.

    It runs inside the store's MULTI/EXEC, so a state change is counted exactly once: when the
    transaction is retried, the first attempt's commands were discarded with it.
    """
    if not deployment.state.is_final:
        return
    app = deployment.app
    pipe.hincrby(keys.DEPLOYMENTS, f"{deployment.state}:{app}", 1)
    if deployment.started_at is None or deployment.finished_at is None:
        return
    seconds = max(0.0, deployment.finished_at - deployment.started_at)
    pipe.hincrby(keys.DEPLOYMENT_DURATION, f"bucket:{bound_text(duration_bucket(seconds))}:{app}", 1)
    pipe.hincrby(keys.DEPLOYMENT_DURATION, f"count:{app}", 1)
    pipe.hincrbyfloat(keys.DEPLOYMENT_DURATION, f"sum:{app}", seconds)

"""The baseline `bench_webhooks.py` measures hooksvc against: the least a webhook receiver can do.

It checks `X-Hub-Signature-256` against the configured secrets and pushes the body onto one Redis
list — no parsing, routing, dedupe or deployment record. Served by gunicorn with the same worker
class (`hooksvc serve`'s waitress worker), processes and threads as `hooksvc serve`, so the
difference is hooksvc's own code.

    BENCH_BARE_SECRETS=s1,s2 REDIS_URL=redis://127.0.0.1:6379/12 \\
        gunicorn -k hooksvc.runtime.web.WaitressWorker -w 2 --threads 8 --worker-connections 1000 \\
        --chdir bench 'bare_app:create_app()'
"""

from __future__ import annotations

import hashlib
import hmac
import os

import redis
from flask import Flask, Response, jsonify, request

#: Environment variable with the comma-separated webhook secrets (one per benchmark app).
SECRETS_ENV = "BENCH_BARE_SECRETS"
#: The list every accepted body is pushed onto.
QUEUE_KEY = "bench:bare:deliveries"
SIGNATURE_PREFIX = b"sha256="
#: Same socket timeouts as hooksvc's `store.connect`, so neither side waits longer on Redis.
REDIS_TIMEOUT_SECONDS = 2.0


def create_app() -> Flask:
    secrets = [s.encode("utf-8") for s in os.environ[SECRETS_ENV].split(",") if s]
    conn = redis.Redis.from_url(
        os.environ["REDIS_URL"],
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    app = Flask(__name__)

    @app.post("/hooks/github")
    def receive_github() -> tuple[Response, int]:
        body = request.get_data()
        given = request.headers.get("X-Hub-Signature-256", "").encode("utf-8", "replace")
        # Stops at the first secret that verifies: a baseline should not do more work than needed.
        if not any(
            hmac.compare_digest(given, SIGNATURE_PREFIX + hmac.new(s, body, hashlib.sha256).hexdigest().encode())
            for s in secrets
        ):
            return jsonify(error="signature missing or wrong"), 401
        conn.lpush(QUEUE_KEY, body)
        return jsonify(queued=True), 202

    return app

"""The HTTP side: `create_app(config)` and its blueprints (hooks, api, pages, metrics).

It reads and writes through the core (`hooksvc.store`, `hooksvc.intake`) and never imports the
deploy side: a webhook's answer only records the deployment; the workers do the rest.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify, request

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.errors import HooksvcError, RetryLater, Unauthorized
from hooksvc.redact import loggable
from hooksvc.store import StateListener, open_store
from hooksvc.web import actions, api, hooks, metrics, oidc, pages
from hooksvc.web.context import EXTENSION, WebContext
from hooksvc.web.stream_slots import StreamSlots, slots_for

log = logging.getLogger("hooksvc.web")


def create_app(
    config: Config,
    connection: redis.Redis | None = None,
    listeners: list[StateListener] | None = None,
    threads: int = defaults.WEB_THREADS,
) -> Flask:
    """Build the Flask app for `config`; tests pass their own Redis connection (and listeners).

    `threads`: the request threads of the process that serves it, which bound its long requests.
    """
    app = Flask(__name__)
    # The web answer never waits for RQ and the listeners: the workers' dispatchers write those.
    store = open_store(config, connection, dispatch_inline=False)
    if listeners is not None:
        store.listeners = list(listeners)
    # No SECRET_KEY: Flask's signed-cookie session stays unused (a NullSession, opened at no cost);
    # the pages' login is a server-side session (hooksvc.sessions).
    app.extensions[EXTENSION] = WebContext(config, store, StreamSlots(slots_for(threads)))

    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(oidc.bp)
    app.register_blueprint(metrics.bp)

    @app.errorhandler(HooksvcError)
    def handle_error(exc: HooksvcError) -> tuple[Response, int]:
        if isinstance(exc, Unauthorized):
            log.warning("401 for %s %s: %s", loggable(request.method), loggable(request.path), exc.reason)
        elif exc.status_code >= 500 and not isinstance(exc, RetryLater):
            log.error("%s for %s %s: %s", exc.status_code, loggable(request.method), loggable(request.path), exc)
        response = jsonify(error=str(exc))
        if isinstance(exc, RetryLater):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, exc.status_code

    @app.errorhandler(404)
    @app.errorhandler(405)
    def handle_http_error(exc: Any) -> tuple[Response, int]:
        return jsonify(error=exc.description), exc.code

    return app

"""The HTTP side: `create_app(config)` and its blueprints (hooks, api, pages, metrics).

It reads and writes through the core (`hooksvc.store`, `hooksvc.intake`) and never imports the
deploy side: a webhook's answer only records the deployment; the workers do the rest.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

import redis
from flask import Flask, Request, Response, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from hooksvc.config import Config
from hooksvc.errors import HooksvcError, Unauthorized
from hooksvc.redact import loggable
from hooksvc.store import StateListener, open_store
from hooksvc.web import api, hooks, metrics, pages
from hooksvc.web.context import EXTENSION, WebContext

log = logging.getLogger("hooksvc.web")


class PageSessionInterface(SecureCookieSessionInterface):
    """Only the HTML pages use the session cookie; webhooks and the API never open one.

    Opening a signed-cookie session costs a serializer per request, a measurable share of a
    webhook's time, for a cookie git hosts never send.
    """

    #: Paths whose requests authenticate by signature or bearer token only.
    SESSIONLESS = ("/hooks/", "/api/", "/metrics", "/healthz")

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.SESSIONLESS):
            return None  # Flask substitutes a NullSession, which refuses writes
        return super().open_session(app, request)


def create_app(
    config: Config,
    connection: redis.Redis | None = None,
    listeners: list[StateListener] | None = None,
) -> Flask:
    """Build the Flask app for `config`; tests pass their own Redis connection (and listeners)."""
    app = Flask(__name__)
    # The web answer never waits for RQ and the listeners: the workers' dispatchers write those.
    store = open_store(config, connection, dispatch_inline=False)
    if listeners is not None:
        store.listeners = list(listeners)
    app.extensions[EXTENSION] = WebContext(config, store)
    app.session_interface = PageSessionInterface()
    app.config["SECRET_KEY"] = session_key(config)

    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(metrics.bp)

    @app.errorhandler(HooksvcError)
    def handle_error(exc: HooksvcError) -> tuple[Response, int]:
        if isinstance(exc, Unauthorized):
            log.warning("401 for %s %s: %s", loggable(request.method), loggable(request.path), exc.reason)
        elif exc.status_code >= 500:
            log.error("%s for %s %s: %s", exc.status_code, loggable(request.method), loggable(request.path), exc)
        return jsonify(error=str(exc)), exc.status_code

    @app.errorhandler(404)
    @app.errorhandler(405)
    def handle_http_error(exc: Any) -> tuple[Response, int]:
        return jsonify(error=exc.description), exc.code

    return app


def session_key(config: Config) -> bytes:
    """The session-cookie key, derived from the API tokens so a changed token logs everyone out.

    Without any token no one can log in, and no cookie may open a page: the key is then random,
    known to no one (derived from anything public, anyone could sign a cookie with it).
    """
    if not config.server.api_tokens:
        return secrets.token_bytes(32)
    material = "\n".join(sorted(t.reveal() for t in config.server.api_tokens))
    return hashlib.sha256(b"hooksvc-session\n" + material.encode()).digest()

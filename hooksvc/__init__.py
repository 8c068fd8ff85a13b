"""hooksvc: signed git webhooks in, zero-downtime docker compose rollouts out."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Request, Response, current_app, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from hooksvc.config import AppConfig, Config
from hooksvc.errors import HooksvcError, Unauthorized
from hooksvc.store import DeploymentStore, StateListener, connect

log = logging.getLogger("hooksvc.web")

#: Key under `app.extensions` holding the app's `WebContext`.
EXTENSION = "hooksvc"


class WebContext:
    """What every view needs: the config and the store. One per app, never global."""

    def __init__(self, config: Config, store: DeploymentStore) -> None:
        self.config = config
        self.store = store
        self._apps_for: dict[frozenset[str], list[AppConfig]] = {}

    def apps_for(self, host_kinds: frozenset[str]) -> list[AppConfig]:
        """The apps served by git hosts of these kinds (the config is immutable: computed once)."""
        apps = self._apps_for.get(host_kinds)
        if apps is None:
            apps = self._apps_for[host_kinds] = [a for a in self.config.apps.values() if a.host_kind in host_kinds]
        return apps


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


def default_listeners() -> list[StateListener]:
    """Store listeners every process registers: commit-status reporting and metrics."""
    from hooksvc.metrics import metrics_listener
    from hooksvc.reporting import status_listener

    return [status_listener, metrics_listener]


def create_app(
    config: Config,
    connection: redis.Redis | None = None,
    listeners: list[StateListener] | None = None,
) -> Flask:
    """Build the Flask app for `config`; tests pass their own Redis connection."""
    app = Flask(__name__)
    conn = connection if connection is not None else connect(config.redis.url)
    store = DeploymentStore(
        conn,
        job_timeout=config.worker.job_timeout,
        listeners=default_listeners() if listeners is None else listeners,
        dispatch_inline=False,
    )
    app.extensions[EXTENSION] = WebContext(config, store)
    app.session_interface = PageSessionInterface()
    app.config["SECRET_KEY"] = session_key(config)

    from hooksvc import api, hooks, metrics, pages

    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(metrics.bp)

    @app.errorhandler(HooksvcError)
    def handle_error(exc: HooksvcError) -> tuple[Response, int]:
        if isinstance(exc, Unauthorized):
            log.warning("401 for %s %s: %s", request.method, request.path, exc.reason)
        elif exc.status_code >= 500:
            log.error("%s for %s %s: %s", exc.status_code, request.method, request.path, exc)
        return jsonify(error=str(exc)), exc.status_code

    @app.errorhandler(404)
    @app.errorhandler(405)
    def handle_http_error(exc: Any) -> tuple[Response, int]:
        return jsonify(error=exc.description), exc.code

    return app


def session_key(config: Config) -> bytes:
    """The session-cookie key, derived from the API tokens so a changed token logs everyone out."""
    import hashlib

    material = "\n".join(sorted(t.reveal() for t in config.server.api_tokens)) or "no-tokens"
    return hashlib.sha256(b"hooksvc-session\n" + material.encode()).digest()


def context() -> WebContext:
    ctx: WebContext = current_app.extensions[EXTENSION]
    return ctx

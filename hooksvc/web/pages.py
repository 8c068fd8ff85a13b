"""The HTML pages: the dashboard at `/`, one page per deployment (the commit status `target_url`), login.

Server-rendered with Jinja (autoescaped: log lines and refs come from outside). The deployment
page shows the log so far without JavaScript; a small script (static/follow.js) then follows
it through `/deployments/<id>/log.json`, which long-polls the log stream in Redis.

Authentication is the API's token, presented as `Authorization: Bearer`, as the password of
HTTP basic auth, or once through the login form, which starts a session kept in Redis and sets a
cookie holding only its random id (SameSite=Lax, HttpOnly; login and logout are POST-only and check
the Origin header; logout deletes the session). Every token check is throttled (hooksvc.login_throttle).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from hooksvc import audit
from hooksvc.app_locks import AppLockState, read_lock
from hooksvc.deployments import Deployment, DeploymentState, iso_time
from hooksvc.errors import HooksvcError, NotFound, RetryLater, TooManyRequests, Unauthorized
from hooksvc.logs import parse_cursor
from hooksvc.operations import AppOverview, app_overview
from hooksvc.operators import Role
from hooksvc.presentation import format_ago, short_ref
from hooksvc.preview_records import PreviewRecord, PreviewRecords
from hooksvc.redact import loggable
from hooksvc.release_steps import steps_from_log
from hooksvc.sessions import credential_fingerprint
from hooksvc.web.auth import (
    SESSION_COOKIE,
    audit_request,
    authorize,
    check_token,
    current_session,
    presented_token,
    require_operator,
    safe_next,
    same_origin_post,
    set_session_cookie,
)
from hooksvc.web.context import claim_stream_slot, client_address, client_gone, context

log = logging.getLogger("hooksvc.pages")
bp = Blueprint("pages", __name__)

#: Newest deployments listed on the dashboard: a screenful on a desktop, enough to spot a pattern.
DASHBOARD_DEPLOYMENTS = 25
#: Last deployments shown per app card: enough to see whether the app is flapping.
RECENT_PER_APP = 5
#: How long one log.json request waits for new lines: short enough to hold a request thread (and a
#: stream slot, see stream_slots) only briefly, long enough that a followed log costs a request every
#: few seconds, not a stream.
LOG_POLL_WAIT_MS = 5000
#: Without JavaScript, a page showing queued or running work reloads itself this often.
NOSCRIPT_REFRESH_SECONDS = 5
#: A login form holds a token and a path: a bigger body is refused unread, since parsing a few MB
#: of form fields costs seconds of CPU and the form is open to anyone.
LOGIN_FORM_MAX_BYTES = 16 * 1024
#: Entries the audit page lists: a few screens, newest first; `hooksvc audit` and the API go further.
AUDIT_PAGE_ENTRIES = 200
#: Endpoints reachable without a token (the login form itself, and leaving).
PUBLIC_ENDPOINTS = frozenset({"pages.login", "pages.logout"})


# -- authentication ----------------------------------------------------------------------------


def _here() -> str:
    """This request's path and query, as a `next` for the login form."""
    return request.full_path.rstrip("?") if request.query_string else request.path


@bp.before_request
def authenticate() -> BaseResponse | tuple[Response, int] | None:
    """Let operators (or anyone, with `public_read`) through; send other browsers to the login form."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    try:
        g.operator = require_operator(context(), read_only=True, browser=True)
    except TooManyRequests as exc:
        if request.endpoint == "pages.deployment_log":
            return _json_error(exc)
        body = render_template("error.html", status=429, message=str(exc))
        return Response(body, 429, {"Retry-After": str(exc.retry_after)})
    except Unauthorized as exc:
        log.info("page %s refused: %s", loggable(request.path), exc.reason)
        if request.endpoint == "pages.deployment_log":
            return jsonify(error=exc.public_message), 401
        if presented_token():
            # A client that sent a token gets a plain answer; a browser asking for a basic-auth
            # password is challenged again so the user can retype it.
            headers = {}
            if request.headers.get("Authorization", "").lower().startswith("basic"):
                headers["WWW-Authenticate"] = 'Basic realm="hooksvc", charset="UTF-8"'
            body = render_template("error.html", status=401, message="That token was not accepted.")
            return Response(body, 401, headers)
        return redirect(url_for("pages.login", next=_here()))
    return None


@bp.after_request
def protect(response: Response) -> Response:
    """Pages may hold internal details: no caching by proxies, no framing, no inline script."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int] | tuple[str, int, dict[str, str]]:
    if request.method == "POST" and (request.content_length is None or request.content_length > LOGIN_FORM_MAX_BYTES):
        return render_template("login.html", next="/", error="That form was too large."), 413
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None), 200
    if not same_origin_post():
        log.warning("login refused: cross-site POST from origin '%s'", loggable(request.headers.get("Origin")))
        return render_template("login.html", next=target, error="Please log in from this page."), 403
    ctx = context()
    token = request.form.get("token", "").strip()
    try:
        operator = check_token(ctx, token)
    except TooManyRequests as exc:
        # Not audited: the wrong tokens that led here were, and a flood of these must not push them out.
        log.warning("login refused from %s: throttled", client_address())
        error = f"Too many wrong tokens. Try again in {exc.retry_after} seconds."
        return render_template("login.html", next=target, error=error), 429, {"Retry-After": str(exc.retry_after)}
    except Unauthorized:
        log.warning("login refused from %s: bad token", client_address())
        audit_request(ctx, audit.LOGIN, audit.FAILED, None, reason="bad token")
        return render_template("login.html", next=target, error="That token was not accepted."), 401
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        ctx.sessions.revoke(old)  # a session id set before login (fixation) never becomes a live one
    session_id = ctx.sessions.create(
        credential=credential_fingerprint(token), address=client_address(), operator=operator.name)
    audit_request(ctx, audit.LOGIN, audit.OK, operator)
    log.info("operator %s logged in from %s", operator.name, client_address())
    response = redirect(target)
    set_session_cookie(response, session_id)
    return response


@bp.post("/logout")
def logout() -> BaseResponse | tuple[str, int]:
    if not same_origin_post():
        return render_template("error.html", status=403, message="Cross-site request refused."), 403
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        context().sessions.revoke(session_id)
    response = redirect(url_for("pages.login"))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
    return response


# -- pages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppCard:
    """One app on the dashboard: its overview, its last deployments, and what it is doing now."""

    overview: AppOverview
    recent: list[Deployment]
    #: A running deployment's state outranks a newer queued one's; else the newest deployment's.
    current_state: str | None
    #: Whether "the head" names one commit (else a deploy from the dashboard names a ref or a sha).
    single_branch: bool
    #: Who locked the app and why; None when it is not locked.
    lock: AppLockState | None
    #: The app's pull-request previews (SPEC §13), by number.
    previews: list[PreviewRecord] = field(default_factory=list)


@bp.get("/")
def dashboard() -> str:
    ctx = context()
    apps = []
    for app in sorted(ctx.config.apps.values(), key=lambda a: a.name):
        overview = app_overview(ctx.store, app)
        recent = ctx.store.recent(app=app.name, limit=RECENT_PER_APP)
        # What the app is doing now: a running deployment outranks a newer queued one behind it.
        running = [d for d in recent if d.state is DeploymentState.RUNNING and d.preview is None]
        previews = PreviewRecords(ctx.store.redis).of_app(app.name) if app.previews is not None else []
        apps.append(AppCard(overview, recent, str(running[0].state) if running else overview.state,
                            app.single_branch, read_lock(ctx.store.redis, app.name), previews))
    newest = ctx.store.recent(limit=DASHBOARD_DEPLOYMENTS)
    # Reloads while something moves soon; a deployment held for a lock or a window may wait for days.
    busy = any(d.state in (DeploymentState.QUEUED, DeploymentState.RUNNING) for d in newest)
    return render_template("dashboard.html", apps=apps, deployments=newest, busy=busy)


@bp.get("/deployments/<deployment_id>")
def deployment(deployment_id: str) -> str:
    store = context().store
    dep = store.get(deployment_id)
    lines, cursor = store.logs.read(deployment_id)
    app = context().config.app(dep.app)
    return render_template("deployment.html", dep=dep, app=app, lines=lines, cursor=cursor,
                           release_steps=steps_from_log(lines))


@bp.get("/audit")
def audit_page() -> str:
    """The audit trail, newest first, filtered by `?app=` and `?operator=` (deployers and admins)."""
    ctx = context()
    authorize(ctx, Role.DEPLOYER, "reading the audit trail")
    app = request.args.get("app") or None
    operator = request.args.get("operator") or None
    entries = audit.recent(ctx.store.redis, app=app, operator=operator, limit=AUDIT_PAGE_ENTRIES)
    return render_template("audit.html", entries=entries, app_filter=app or "", operator_filter=operator or "",
                           apps=sorted(ctx.config.apps), operators=sorted({o.name for o, _ in ctx.tokens}))


@bp.get("/deployments/<deployment_id>/log.txt")
def deployment_log_text(deployment_id: str) -> Response:
    """The whole log as plain text (the API's log route wants a bearer token; this takes the session)."""
    store = context().store
    store.get(deployment_id)
    lines, _ = store.logs.read(deployment_id)
    return Response("".join(f"{line}\n" for line in lines), mimetype="text/plain")


@bp.get("/deployments/<deployment_id>/log.json")
def deployment_log(deployment_id: str) -> tuple[Response, int]:
    """Log lines after `after` (a cursor from the page or an earlier answer) and the deployment's state.

    With `wait=1` and a deployment still going, waits up to LOG_POLL_WAIT_MS for new lines. The
    state is read before the log, so the answer that says `final` carries the last lines too.
    """
    ctx = context()
    store = ctx.store
    after = parse_cursor(request.args.get("after", "0-0"))
    dep = store.get(deployment_id)
    wait = request.args.get("wait") in ("1", "true") and not dep.state.is_final
    if wait:
        # The wait holds a request thread: it takes one of the process's few stream slots.
        release = claim_stream_slot(ctx)
        try:
            lines, cursor = store.logs.wait_for_lines(deployment_id, after, LOG_POLL_WAIT_MS, client_gone())
        finally:
            release()
    else:
        lines, cursor = store.logs.read(deployment_id, after)
    if wait and lines:
        # Lines that came in the same instant as the woken-up read.
        more, cursor = store.logs.read(deployment_id, cursor)
        lines += more
    return jsonify(
        lines=lines,
        cursor=cursor,
        state=str(dep.state),
        final=dep.state.is_final,
        deployment=dep.to_json(),
        duration=format_duration(duration_seconds(dep)),
    ), 200


# -- errors --------------------------------------------------------------------------------------


@bp.errorhandler(HooksvcError)
def page_error(exc: HooksvcError) -> tuple[Response | str, int]:
    """Errors of the pages as HTML (the log endpoint answers JSON like the API)."""
    if request.endpoint == "pages.deployment_log":
        return _json_error(exc)
    if exc.status_code >= 500 and not isinstance(exc, RetryLater):
        log.error("%s for %s %s: %s", exc.status_code, loggable(request.method), loggable(request.path), exc)
    message = str(exc) if isinstance(exc, NotFound) else _public_message(exc)
    return render_template("error.html", status=exc.status_code, message=message), exc.status_code


def _json_error(exc: HooksvcError) -> tuple[Response, int]:
    response = jsonify(error=str(exc))
    if isinstance(exc, RetryLater):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response, exc.status_code


def _public_message(exc: HooksvcError) -> str:
    if exc.status_code == 503:
        return "Redis is unreachable, so deployments cannot be shown right now. Try again shortly."
    return str(exc)


# -- template helpers ----------------------------------------------------------------------------


def duration_seconds(dep: Deployment, now: float | None = None) -> float | None:
    """Start to finish, or start to now while running; None when it never started."""
    if dep.started_at is None:
        return None
    end = dep.finished_at if dep.finished_at is not None else (time.time() if now is None else now)
    return max(0.0, end - dep.started_at)


def format_duration(seconds: float | None) -> str:
    """`42s`, `3m 05s`, `1h 02m`; empty when unknown."""
    if seconds is None:
        return ""
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def format_time(ts: float | None) -> str:
    """An absolute UTC time a person reads: `2024-05-01 12:34:56 UTC`."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.context_processor
def template_helpers() -> dict[str, Any]:
    session = current_session(context())
    return {
        "duration_seconds": duration_seconds,
        "format_duration": format_duration,
        "format_time": format_time,
        "format_ago": format_ago,
        "iso_time": iso_time,
        "short_ref": short_ref,
        "logged_in": session is not None,
        "operator": g.get("operator"),
        "oidc": context().oidc is not None,
        "can_audit": g.get("operator") is not None and g.operator.role.allows(Role.DEPLOYER),
        # The dashboard's actions need a login session (their forms carry its CSRF token) and the deployer role.
        "can_act": session is not None and session[1].role.allows(Role.DEPLOYER),
        "can_lock": session is not None and session[1].role.allows(Role.ADMIN),
        "csrf_token": session[0].csrf_token if session is not None else "",
        "final_states": [s.value for s in DeploymentState if s.is_final],
        "noscript_refresh": NOSCRIPT_REFRESH_SECONDS,
    }

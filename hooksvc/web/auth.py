"""Operator authentication and authorization: who a request comes from, and whether their role allows it.

Bearer tokens open the API; basic auth or a session cookie open the pages. Every token check goes
through the login throttle (failures counted per address and per token in Redis), and a session is a
record in Redis that the cookie names by a random id, bound to the operator who logged in. Requests
refused for their credentials (401) or their role (403) are written to the audit trail.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import g, request
from werkzeug.wrappers import Response as BaseResponse

from hooksvc import audit, defaults
from hooksvc.deployments import Deployment
from hooksvc.errors import Forbidden, HooksvcError, TooManyRequests, Unauthorized
from hooksvc.operators import Operator, Role, find_by_token, parse_role, require
from hooksvc.redact import loggable
from hooksvc.sessions import OperatorSession
from hooksvc.web.context import WebContext, client_address, context, user_agent

#: The login form's cookie: a random session id, nothing else.
SESSION_COOKIE = "hooksvc_session"


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else `/`: the login form must not redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def set_session_cookie(response: BaseResponse, session_id: str) -> None:
    """The login's cookie: the session id only, hardened."""
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=defaults.SESSION_LIFETIME_SECONDS, path="/", httponly=True,
        # Lax: the cookie rides along on top-level links (a commit status link from the git
        # host works) but not on cross-site POSTs or fetches.
        samesite="Lax",
        # Behind TLS (as public_url says) the cookie must never travel over plain HTTP.
        secure=context().config.server.public_url.startswith("https://"),
    )


def same_origin_post() -> bool:
    """A POST whose Origin (when the browser sends one) is this site: the forms' first CSRF defence."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {request.host, urlsplit(context().config.server.public_url).netloc}
    return urlsplit(origin).netloc in allowed - {""}


def check_token(ctx: WebContext, token: str) -> Operator:
    """The operator whose token `token` is; TooManyRequests while its address or the token is
    throttled (checked first, so a throttled guesser learns nothing), else Unauthorized."""
    address = client_address()
    wait = ctx.login_throttle.wait_seconds(address, token)
    if wait:
        raise TooManyRequests(f"too many wrong tokens from this address or for this token: retry in {wait} s", wait)
    operator = find_by_token(ctx.tokens, token)
    if operator is None:
        ctx.login_throttle.record_failure(address, token)
        raise Unauthorized("bad token")
    return operator


def current_session(ctx: WebContext) -> tuple[OperatorSession, Operator] | None:
    """The live session the request's cookie names, if any, and its operator (looked up once per request).

    A session opened with a token that is no longer configured, or that now belongs to another
    operator, is over; the operator's role is the one configured now.
    """
    if "hooksvc_session" in g:
        found: tuple[OperatorSession, Operator] | None = g.hooksvc_session
        return found
    found = None
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if session_id:
        session = ctx.sessions.get(session_id)
        operator = None
        if session is not None and ctx.oidc_credential and session.credential == ctx.oidc_credential:
            # Single sign-on: the provider vouched for the name and the claims gave the role at login.
            operator = Operator(session.operator, parse_role(session.role))
        elif session is not None:
            operator = ctx.credentials.get(session.credential)
        if session is not None and operator is not None and operator.name == session.operator:
            found = (session, operator)
    g.hooksvc_session = found
    return found


def presented_token() -> str:
    """The token a request carries: `Authorization: Bearer T`, or basic auth with T as password."""
    scheme, value = _authorization()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


def _authorization() -> tuple[str, str]:
    """The Authorization header's scheme (lower-case) and credentials."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower(), value


def require_operator(ctx: WebContext, read_only: bool, *, browser: bool = False) -> Operator | None:
    """The operator the request's credentials name; raise Unauthorized when it must carry some and does not.

    Read-only requests pass without credentials under `public_read` (the answer is then None: an
    anonymous reader), but credentials they carry are still checked, throttle included.
    `browser`: the request is for an HTML page, which basic auth and the login's session cookie open
    too. Everywhere else (the API) only a bearer token counts: a browser adds basic auth and cookies
    to a request by itself, also to one another web site makes it send, but never a bearer token.
    A wrong token is audited as refused; a request with no credential at all is not (it names no
    one, and anyone could flood the trail with them).
    """
    public = read_only and ctx.config.server.public_read
    if browser and request.cookies.get(SESSION_COOKIE):
        session = current_session(ctx)
        if session is not None:
            return session[1]
    scheme, _ = _authorization()
    token = presented_token()
    try:
        if not browser and scheme not in ("bearer", ""):
            raise Unauthorized(f"'{loggable(scheme)}' authorization: the API takes a bearer token only")
        if not token:
            raise Unauthorized("missing bearer token")
        return check_token(ctx, token)
    except Unauthorized as exc:
        if token:
            reason = f"{exc.reason}: {request.method} {loggable(request.path)}"
            audit_request(ctx, refused_action(), audit.REFUSED, None, reason=reason)
        if public:
            return None
        raise


#: What a refused request to an endpoint was trying to do, for its audit entry; any other is `access`.
REFUSED_ACTIONS = {
    "api.deploy": audit.DEPLOY,
    "api.rollback": audit.ROLLBACK,
    "api.cancel": audit.CANCEL,
    "api.redeploy": audit.REDEPLOY,
    "api.lock": audit.LOCK,
    "api.unlock": audit.UNLOCK,
    "actions.deploy": audit.DEPLOY,
    "actions.rollback": audit.ROLLBACK,
    "actions.cancel": audit.CANCEL,
    "actions.redeploy": audit.REDEPLOY,
    "actions.lock": audit.LOCK,
    "actions.unlock": audit.UNLOCK,
}


def refused_action() -> str:
    """The audit action of the request being refused."""
    return REFUSED_ACTIONS.get(request.endpoint or "", audit.ACCESS)


def audit_request(
    ctx: WebContext, action: str, result: str, operator: Operator | None, *, app: str | None = None,
    sha: str | None = None, deployment: str | None = None, reason: str = "",
) -> audit.AuditEntry:
    """Record what this request did (or tried) in the audit trail, with its address and user agent.

    The app and deployment default to the route's `<name>` and `<deployment_id>`.
    """
    args = request.view_args or {}
    named = args.get("name")
    return audit.record(ctx.store.redis, audit.AuditEntry(
        action=action, result=result, operator=operator.name if operator else None,
        app=app or (named if named and ctx.config.app(named) else None),
        sha=sha, deployment=deployment or args.get("deployment_id"),
        address=client_address(), user_agent=user_agent(), reason=reason))


def authorize(ctx: WebContext, role: Role, what: str) -> Operator:
    """The request's operator when its role allows `role`'s actions; else 401 or 403, audited as refused.

    `what`: the action in a few words for the 403's message ("deploying shop").
    """
    operator: Operator | None = g.get("operator")
    if operator is None:
        raise Unauthorized(f"{what} needs credentials")
    try:
        return require(operator, role, what)
    except Forbidden as exc:
        audit_request(ctx, refused_action(), audit.REFUSED, operator, reason=str(exc))
        raise


def audited(action: str, role: Role, what: str, act: Callable[[str], Deployment]) -> Deployment:
    """Check the operator's role for `action`, run `act(operator name)`, and audit how it ended."""
    ctx = context()
    operator = authorize(ctx, role, what)
    try:
        dep = act(operator.name)
    except HooksvcError as exc:
        audit_request(ctx, action, audit.FAILED, operator, reason=str(exc))
        raise
    audit_request(ctx, action, audit.result_of(action, dep), operator, app=dep.app, sha=dep.sha or None,
                  deployment=dep.id)
    return dep

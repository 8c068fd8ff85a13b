"""Operator authentication: bearer tokens for the API; basic auth or a session cookie for pages.

Every token check goes through the login throttle (failures counted per address and per token in
Redis), and a session is a record in Redis that the cookie names by a random id.
"""

from __future__ import annotations

import base64
import hmac

from flask import g, request

from hooksvc import audit
from hooksvc.config import Config
from hooksvc.errors import Forbidden, TooManyRequests, Unauthorized
from hooksvc.operators import API_TOKEN_ROLE, Operator, Role, api_token_name, find_by_token, require
from hooksvc.redact import loggable
from hooksvc.sessions import OperatorSession
from hooksvc.web.context import WebContext, client_address

#: The login form's cookie: a random session id, nothing else.
SESSION_COOKIE = "hooksvc_session"


def token_is_valid(config: Config, presented: str) -> bool:
    """Constant-time comparison against every configured token (no early exit on a match)."""
    if not presented:
        return False
    matched = False
    for token in config.server.api_tokens:
        matched |= hmac.compare_digest(token.reveal().encode(), presented.encode())
    return matched


def check_token(ctx: WebContext, token: str) -> None:
    """Pass when `token` is an operator's; TooManyRequests while its address or the token is
    throttled (checked first, so a throttled guesser learns nothing), else Unauthorized."""
    address = client_address()
    wait = ctx.login_throttle.wait_seconds(address, token)
    if wait:
        raise TooManyRequests(f"too many wrong tokens from this address or for this token: retry in {wait} s", wait)
    if not token_is_valid(ctx.config, token):
        ctx.login_throttle.record_failure(address, token)
        raise Unauthorized("bad token")


def current_session(ctx: WebContext) -> OperatorSession | None:
    """The live session the request's cookie names, if any (looked up once per request).

    A session opened with a token that is no longer configured is over; without any token
    configured no session is valid.
    """
    if "hooksvc_session" in g:
        found: OperatorSession | None = g.hooksvc_session
        return found
    found = None
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if session_id and ctx.credentials:
        found = ctx.sessions.get(session_id)
        if found is not None and found.credential not in ctx.credentials:
            found = None
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


def require_operator(ctx: WebContext, read_only: bool, *, browser: bool = False) -> bool:
    """Whether the request carries an operator's credentials; raise Unauthorized when it must and does not.

    Read-only requests pass without credentials under `public_read` (the answer is then False: an
    anonymous reader), but credentials they carry are still checked, throttle included.
    `browser`: the request is for an HTML page, which basic auth and the login's session cookie open
    too. Everywhere else (the API) only a bearer token counts: a browser adds basic auth and cookies
    to a request by itself, also to one another web site makes it send, but never a bearer token.
    """
    public = read_only and ctx.config.server.public_read
    if browser and request.cookies.get(SESSION_COOKIE) and current_session(ctx) is not None:
        return True
    scheme, _ = _authorization()
    token = presented_token()
    try:
        if not browser and scheme not in ("bearer", ""):
            raise Unauthorized(f"'{loggable(scheme)}' authorization: the API takes a bearer token only")
        if not token:
            raise Unauthorized("missing bearer token")
        check_token(ctx, token)
    except Unauthorized:
        if public:
            return False
        raise
    return True


# -- roles and the audit trail ------------------------------------------------------------------------

def request_operator(ctx: WebContext) -> Operator | None:
    """The operator whose bearer token the request carries: each `server.api_tokens` token is an
    admin named `token-N` (`hooksvc.operators`); None without a valid token."""
    tokens = [(Operator(api_token_name(i), API_TOKEN_ROLE), t.reveal())
              for i, t in enumerate(ctx.config.server.api_tokens, start=1)]
    return find_by_token(tokens, presented_token())


def authorize(ctx: WebContext, role: Role, what: str) -> Operator:
    """The request's operator when its role allows `role`'s actions; else 401 or 403, audited as refused.

    `what`: the action in a few words for the 403's message ("locking shop"). The one role check
    of each route that changes something.
    """
    operator = request_operator(ctx)
    if operator is None:
        raise Unauthorized(f"{what} needs credentials")
    try:
        return require(operator, role, what)
    except Forbidden as exc:
        audit_request(ctx, audit.ACCESS, audit.REFUSED, operator, reason=str(exc))
        raise


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
        address=client_address(), user_agent=request.headers.get("User-Agent", ""), reason=reason))

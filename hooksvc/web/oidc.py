"""Single sign-on: operators log in through an OpenID Connect provider (`[server.oidc]`, SPEC §11).

The authorization code flow with PKCE: `/login/oidc` remembers a random `state`, `nonce` and code
verifier in Redis (and the state in a short-lived cookie, so the flow can only finish in the browser
that started it) and sends the browser to the provider; `/login/oidc/callback` takes the state once,
exchanges the code for tokens (Authlib's client, the client secret as HTTP basic auth), and checks
the ID token with joserfc: its signature against the provider's published keys, issuer, audience,
expiry and nonce. The claims then decide the role (`OidcConfig.role_for`); the session is bound to
that name and role like a token's session. Every outcome is audited as a login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlencode

from flask import Blueprint, Response, g, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from hooksvc import audit, defaults, keys
from hooksvc.connection import call
from hooksvc.redact import escape_controls
from hooksvc.web.auth import SESSION_COOKIE, audit_request, safe_next, set_session_cookie
from hooksvc.web.context import client_address, context
from hooksvc.web.oidc_provider import LoginFailed, OidcProvider, oidc_credential, operator_for, verify_id_token

log = logging.getLogger("hooksvc.oidc")
bp = Blueprint("oidc", __name__)

#: The cookie naming the single sign-on this browser started (its `state`), for the callback only.
STATE_COOKIE = "hooksvc_oidc_state"


def _provider() -> OidcProvider:
    ctx = context()
    if ctx.oidc is None:
        raise LoginFailed(404, "Single sign-on is not set up on this server.", "no [server.oidc]")
    return ctx.oidc


def _redirect_uri() -> str:
    return f"{context().config.server.public_url}/login/oidc/callback"


@bp.after_request
def no_store(response: Response) -> Response:
    """Answers of the sign-on carry a state or a session: never cached."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.errorhandler(LoginFailed)
def login_failed(exc: LoginFailed) -> tuple[str, int]:
    log.warning("single sign-on refused from %s: %s", client_address(), exc.reason)
    # Audited once a sign-on this server started came back: before that the request names no one,
    # and anyone could flood the trail with made-up callbacks.
    if g.get("oidc_login_taken"):
        audit_request(context(), audit.LOGIN, audit.FAILED, None, reason=f"single sign-on: {exc.reason}")
    return render_template("login.html", next="/", error=exc.message, oidc=context().oidc is not None), exc.status


@bp.get("/login/oidc")
def start() -> BaseResponse:
    """Remember a new state, nonce and PKCE verifier, and send the browser to the provider."""
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # see oidc_provider: loaded when used

    provider = _provider()
    metadata = provider.metadata()
    _count_start()
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    key = keys.oidc_login(hashlib.sha256(state.encode()).hexdigest())
    pipe = context().store.redis.pipeline()
    pipe.hset(key, mapping={"nonce": nonce, "verifier": verifier, "next": safe_next(request.args.get("next"))})
    pipe.expire(key, defaults.OIDC_LOGIN_SECONDS)
    call(pipe.execute)
    query = urlencode({
        "response_type": "code", "client_id": provider.config.client_id, "redirect_uri": _redirect_uri(),
        "scope": provider.config.scopes, "state": state, "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    })
    endpoint = str(metadata["authorization_endpoint"])
    response = redirect(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}")
    response.set_cookie(STATE_COOKIE, state, max_age=defaults.OIDC_LOGIN_SECONDS, path="/login/oidc",
                        httponly=True, samesite="Lax",
                        secure=context().config.server.public_url.startswith("https://"))
    return response


def _count_start() -> None:
    """Count a sign-on started from this address; 429 beyond `OIDC_STARTS_PER_ADDRESS` in the window."""
    key = keys.oidc_starts(client_address())
    pipe = context().store.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, defaults.OIDC_LOGIN_SECONDS, nx=True)
    started, _ = call(pipe.execute)
    if int(started) > defaults.OIDC_STARTS_PER_ADDRESS:
        raise LoginFailed(429, "Too many sign-ons started from this address. Try again in a few minutes.",
                          "too many sign-ons started from this address")


def _take_login(state: str) -> dict[str, str]:
    """The sign-on `state` names, deleted as it is read: a state (and its code) works once."""
    if not state or len(state) > 128:
        raise LoginFailed(400, "That sign-on link is not valid. Please log in again.", "no state")
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not hmac.compare_digest(cookie.encode(), state.encode()):
        raise LoginFailed(400, "Please start the sign-on from this browser.", "state does not match this browser's")
    key = keys.oidc_login(hashlib.sha256(state.encode()).hexdigest())
    pipe = context().store.redis.pipeline()
    pipe.hgetall(key)
    pipe.delete(key)
    fields, _ = call(pipe.execute)
    if not fields:
        raise LoginFailed(400, "That sign-on has expired or was already used. Please log in again.",
                          "unknown, expired or used state")
    return {k.decode(): v.decode() for k, v in fields.items()}


def _exchange(provider: OidcProvider, code: str, verifier: str) -> str:
    """The ID token the provider gives for `code`."""
    from authlib.integrations.requests_client import OAuth2Session

    config = provider.config
    client = OAuth2Session(config.client_id, config.client_secret.reveal(), redirect_uri=_redirect_uri(),
                           token_endpoint_auth_method="client_secret_basic")  # noqa: S106 - a method's name
    try:
        token = client.fetch_token(str(provider.metadata()["token_endpoint"]), code=code, code_verifier=verifier,
                                   timeout=defaults.OIDC_HTTP_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - Authlib raises its own errors and requests'; any is a failed login
        raise LoginFailed(502, "The single sign-on provider refused the login. Please try again.",
                          f"token request failed: {type(exc).__name__}: {escape_controls(str(exc))[:200]}") from None
    finally:
        client.close()
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise LoginFailed(502, "The single sign-on provider sent no ID token.", "no id_token in the token answer")
    return id_token


@bp.get("/login/oidc/callback")
def callback() -> BaseResponse:
    """Finish the sign-on the provider sends the browser back from, and start the operator's session."""
    provider = _provider()
    login = _take_login(request.args.get("state", ""))
    g.oidc_login_taken = True
    if request.args.get("error"):
        raise LoginFailed(401, "The single sign-on provider did not log you in.",
                          f"provider answered {escape_controls(request.args['error'])[:100]}")
    code = request.args.get("code", "")
    if not code:
        raise LoginFailed(400, "That sign-on link is not valid. Please log in again.", "no code")
    claims = verify_id_token(provider, _exchange(provider, code, login["verifier"]), login["nonce"])
    operator = operator_for(provider.config, claims)
    ctx = context()
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        ctx.sessions.revoke(old)
    session_id = ctx.sessions.create(credential=oidc_credential(provider.config), address=client_address(),
                                     operator=operator.name, role=operator.role.value)
    audit_request(ctx, audit.LOGIN, audit.OK, operator, reason="single sign-on")
    log.info("operator %s (%s) logged in through single sign-on from %s", operator.name, operator.role,
             client_address())
    response = redirect(login.get("next") or "/")
    set_session_cookie(response, session_id)
    response.delete_cookie(STATE_COOKIE, path="/login/oidc", httponly=True, samesite="Lax")
    return response

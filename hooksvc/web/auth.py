"""Operator authentication: bearer tokens for the API; basic auth or a session cookie for pages."""

from __future__ import annotations

import base64
import hmac

from flask import request, session

from hooksvc.config import Config
from hooksvc.errors import Unauthorized
from hooksvc.redact import loggable

SESSION_FLAG = "hooksvc_operator"


def token_is_valid(config: Config, presented: str) -> bool:
    """Constant-time comparison against every configured token (no early exit on a match)."""
    if not presented:
        return False
    matched = False
    for token in config.server.api_tokens:
        matched |= hmac.compare_digest(token.reveal().encode(), presented.encode())
    return matched


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


def require_operator(config: Config, read_only: bool, *, browser: bool = False) -> None:
    """Raise Unauthorized unless the request may go on (read-only requests pass with `public_read`).

    `browser`: the request is for an HTML page, which basic auth and the login's session cookie open
    too. Everywhere else (the API) only a bearer token counts: a browser adds basic auth and cookies
    to a request by itself, also to one another web site makes it send, but never a bearer token.
    """
    if read_only and config.server.public_read:
        return
    # No token configured means no one can have logged in: no cookie opens anything then.
    if browser and config.server.api_tokens and session.get(SESSION_FLAG):
        return
    scheme, _ = _authorization()
    if not browser and scheme not in ("bearer", ""):
        raise Unauthorized(f"'{loggable(scheme)}' authorization: the API takes a bearer token only")
    token = presented_token()
    if not token_is_valid(config, token):
        raise Unauthorized("missing bearer token" if not token else "bad token")

"""Operator authentication: bearer tokens for the API; basic auth or a session cookie for pages."""

from __future__ import annotations

import base64
import hmac

from flask import request, session

from hooksvc.config import Config
from hooksvc.errors import Unauthorized

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
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


def require_operator(config: Config, read_only: bool, allow_session: bool = False) -> None:
    """Raise Unauthorized unless the request may go on (read-only requests pass with `public_read`)."""
    if read_only and config.server.public_read:
        return
    if allow_session and session.get(SESSION_FLAG):
        return
    token = presented_token()
    if not token_is_valid(config, token):
        raise Unauthorized("missing bearer token" if not token else "bad token")

"""The OpenID Connect provider as hooksvc sees it: its discovery document, its keys, and the checks
of an ID token it issued (signature, issuer, audience, expiry, nonce) with joserfc.

No Flask here: `hooksvc.web.oidc` runs the login flow on top of it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from hooksvc import defaults
from hooksvc.config import OidcConfig
from hooksvc.operators import Operator
from hooksvc.redact import escape_controls

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

# requests and joserfc (with cryptography, ~16 MB of modules) are imported when a sign-on first needs
# them: every web process serves webhooks, and most configs have no [server.oidc].

#: Signature algorithms accepted on an ID token: asymmetric ones only (never `none`, never a MAC
#: keyed with the client secret, which the provider is not the only one to know).
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
#: Longest operator name taken from a claim (the configured names have the same bound).
MAX_NAME_CHARS = 64


def oidc_credential(oidc: OidcConfig) -> str:
    """What a single sign-on session records as its credential: the provider and client, so that
    another provider (or none) in the config ends the sessions the old one opened."""
    digest = hashlib.sha256(f"{oidc.issuer}\n{oidc.client_id}".encode()).hexdigest()
    return f"oidc:{digest}"


class LoginFailed(Exception):
    """A single sign-on that cannot finish: `status` and a message for the person; `reason` for the log."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.message = message
        self.reason = reason


class OidcProvider:
    """The provider's discovery document and keys, fetched when first needed and again when old or when
    an ID token names a key not yet seen (keys rotate)."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._fetched_at = 0.0

    def _get(self, url: str) -> dict[str, Any]:
        import requests

        try:
            response = requests.get(url, timeout=defaults.OIDC_HTTP_TIMEOUT_SECONDS)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise LoginFailed(502, "The single sign-on provider cannot be reached. Try again shortly.",
                              f"fetching {url}: {exc}") from None
        if not isinstance(body, dict):
            raise LoginFailed(502, "The single sign-on provider answered nonsense.", f"{url} is not a JSON object")
        return body

    def metadata(self, refresh: bool = False) -> dict[str, Any]:
        """The discovery document (`ISSUER/.well-known/openid-configuration`)."""
        with self._lock:
            old = time.monotonic() - self._fetched_at > defaults.OIDC_METADATA_SECONDS
            if self._metadata is None or refresh or old:
                found = self._get(f"{self.config.issuer}/.well-known/openid-configuration")
                missing = {"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"} - set(found)
                if missing:
                    raise LoginFailed(502, "The single sign-on provider is misconfigured.",
                                      f"its discovery document lacks {', '.join(sorted(missing))}")
                if str(found["issuer"]).rstrip("/") != self.config.issuer:
                    raise LoginFailed(502, "The single sign-on provider is misconfigured.",
                                      f"its discovery document names issuer {found['issuer']!r}, "
                                      f"not {self.config.issuer!r} (server.oidc.issuer)")
                self._metadata, self._keys, self._fetched_at = found, None, time.monotonic()
            return self._metadata

    def keys(self, refresh: bool = False) -> KeySet:
        """The provider's public keys (its JWKS)."""
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        url = str(self.metadata(refresh=refresh)["jwks_uri"])
        with self._lock:
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(self._get(url))  # type: ignore[arg-type]
                except (JoseError, ValueError, KeyError) as exc:
                    raise LoginFailed(502, "The single sign-on provider's keys cannot be read.",
                                      f"{url}: {exc}") from None
            return self._keys


def verify_id_token(provider: OidcProvider, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature (by one of the provider's keys), issuer, audience,
    expiry and nonce are right; LoginFailed (401) otherwise."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    def fail(reason: str) -> LoginFailed:
        return LoginFailed(401, "The single sign-on could not be verified. Please log in again.", reason)

    try:
        try:
            decoded = jwt.decode(id_token, provider.keys(), algorithms=list(ID_TOKEN_ALGORITHMS))
        except (JoseError, ValueError) as first:
            if "key" not in str(first).lower():
                raise
            decoded = jwt.decode(id_token, provider.keys(refresh=True), algorithms=list(ID_TOKEN_ALGORITHMS))
    except (JoseError, ValueError) as exc:
        raise fail(f"ID token signature not valid: {type(exc).__name__}") from None
    config = provider.config
    registry = jwt.JWTClaimsRegistry(
        leeway=defaults.OIDC_CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": config.issuer},
        aud={"essential": True, "value": config.client_id},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise fail(f"ID token refused: {exc.error}: {escape_controls(str(exc.description))[:200]}") from None
    claims: dict[str, Any] = dict(decoded.claims)
    return claims


def operator_for(config: OidcConfig, claims: dict[str, Any]) -> Operator:
    """Who the claims say logged in, with the role `[server.oidc] roles` grants them; 403 when none."""
    raw = claims.get(config.name_claim)
    name = escape_controls(raw if isinstance(raw, str) and raw else str(claims["sub"]))[:MAX_NAME_CHARS]
    role = config.role_for(claims)
    if role is None:
        raise LoginFailed(403, f"{name} has no role on this server: ask an admin to grant one in [server.oidc] roles.",
                          f"{name}: no role matches the ID token's claims")
    return Operator(name, role)

"""A stand-in OpenID Connect provider on 127.0.0.1: discovery, JWKS, authorize and token endpoints.

It issues ID tokens signed RS256 with its own key, checks what a real provider checks (client id,
redirect URI, client secret, the PKCE verifier, one use per code), and can be told to misbehave the
ways a forger or a broken provider would: another key, another issuer or audience, an expired token,
a wrong nonce.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Response as BaseResponse

CLIENT_ID = "hooksvc"
CLIENT_SECRET = "oidc-client-secret-0123456789"  # noqa: S105 - a test's stand-in secret


@dataclass
class Misbehaviour:
    """What the next ID tokens get wrong (all empty: a well-behaved provider)."""

    sign_with: RSAKey | None = None
    issuer: str | None = None
    audience: str | None = None
    expires_in: int = 300
    nonce: str | None = None
    algorithm: str = "RS256"


@dataclass
class FakeOidcProvider:
    """The provider's state: who logs in next (their claims), issued codes, and requests seen."""

    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "preferred_username": "olga",
                                                           "groups": ["dev"], "email": "olga@example.com"})
    misbehave: Misbehaviour = field(default_factory=Misbehaviour)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: int = 0
    url: str = ""

    def app(self) -> Flask:
        app = Flask("fake-oidc")

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Response:
            return jsonify(issuer=self.url, authorization_endpoint=f"{self.url}/authorize",
                           token_endpoint=f"{self.url}/token", jwks_uri=f"{self.url}/jwks",
                           response_types_supported=["code"], id_token_signing_alg_values_supported=["RS256"])

        @app.get("/jwks")
        def jwks() -> Response:
            return jsonify(keys=[self.key.as_dict(private=False)])

        @app.get("/authorize")
        def authorize() -> BaseResponse | tuple[str, int]:
            args = request.args
            if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
                return "bad client or response type", 400
            if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
                return "PKCE required", 400
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": args.get("nonce", ""), "challenge": args["code_challenge"],
                                "redirect_uri": args.get("redirect_uri", "")}
            return redirect(f"{args['redirect_uri']}?{urlencode({'code': code, 'state': args.get('state', '')})}")

        @app.post("/token")
        def token() -> tuple[Response, int]:
            self.token_requests += 1
            auth = request.authorization
            if auth is None or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
                return jsonify(error="invalid_client"), 401
            issued = self.codes.pop(request.form.get("code", ""), None)
            if issued is None or request.form.get("redirect_uri") != issued["redirect_uri"]:
                return jsonify(error="invalid_grant"), 400
            verifier = request.form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != issued["challenge"]:
                return jsonify(error="invalid_grant", error_description="PKCE verifier"), 400
            return jsonify(access_token="at", token_type="Bearer", expires_in=300,
                           id_token=self.id_token(issued["nonce"])), 200

        return app

    def id_token(self, nonce: str) -> str:
        """An ID token for `user`, as the misbehaviour says."""
        m = self.misbehave
        now = int(time.time())
        claims = {"iss": m.issuer or self.url, "aud": m.audience or CLIENT_ID, "iat": now, "exp": now + m.expires_in,
                  "nonce": m.nonce if m.nonce is not None else nonce, **self.user}
        key = m.sign_with or self.key
        return jwt.encode({"alg": m.algorithm, "kid": key.kid or "k1"}, claims, key)


class RunningProvider:
    """A `FakeOidcProvider` served on a free port in a thread; `stop()` ends it."""

    def __init__(self) -> None:
        self.provider = FakeOidcProvider()
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self.provider.app(), threaded=True)
        self.provider.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-oidc", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

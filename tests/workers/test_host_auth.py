"""Credentials for a host's API: personal tokens unchanged, GitHub App JWTs and installation tokens
cached, renewed before they lapse, renewed once by concurrent callers, and dropped on a 401."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hooksvc import defaults
from hooksvc.config import AppConfig, GitHubAppConfig, HostConfig, Secret
from workers import host_auth
from workers.host_auth import HostAuthError, HostCredentials, app_jwt
from workers.http import HttpRequest, HttpResponse

NOW = 1_800_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                        serialization.NoEncryption()).decode()
APP = GitHubAppConfig(app_id=4242, private_key=Secret(PEM), private_key_file=Path("/run/secrets/app.pem"))
APP_HOST = HostConfig(name="gh", kind="github", api_url="https://api.github.test", app=APP)
TOKEN_HOST = HostConfig(name="gh", kind="github", api_url="https://api.github.test",
                        token=Secret("personal-token-0123456789"))


class StandInGitHub:
    """Answers the two App endpoints the way GitHub documents them, counting requests."""

    def __init__(self, clock: list[float], installation: int = 77) -> None:
        self.clock = clock
        self.installation = installation
        self.requests: list[HttpRequest] = []
        self.issued = 0
        self.delay = 0.0

    def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        claims = jwt.decode(request.headers["Authorization"].removeprefix("Bearer "), KEY.public_key(),
                            algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
        assert claims["iss"] == "4242"
        if request.method == "GET":
            return HttpResponse(200, json.dumps({"id": self.installation}).encode())
        time.sleep(self.delay)
        self.issued += 1
        expires = datetime.fromtimestamp(self.clock[0] + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return HttpResponse(201, json.dumps({"token": f"ghs_token{self.issued}", "expires_at": expires}).encode())


@pytest.fixture
def clock() -> list[float]:
    return [NOW]


@pytest.fixture
def github(clock: list[float]) -> StandInGitHub:
    return StandInGitHub(clock)


@pytest.fixture
def credentials(github: StandInGitHub, clock: list[float]) -> HostCredentials:
    return HostCredentials(send=github.send, clock=lambda: clock[0])


class TestPersonalToken:
    def test_a_token_host_gets_its_token_as_bearer(self) -> None:
        """A host with a personal token is sent `Bearer <token>`, with no request to GitHub."""
        assert HostCredentials(send=pytest.fail).authorization(TOKEN_HOST, "o/r") == "Bearer personal-token-0123456789"

    def test_a_host_without_credentials_gets_none(self) -> None:
        """A host with neither a token nor an App sends no Authorization at all."""
        host = HostConfig(name="gh", kind="github", api_url="https://api.github.test")
        assert host_auth.authorization(host, "o/r") is None

    def test_with_token_leaves_a_token_host_alone(self) -> None:
        """Builders that read `host.token` see the personal token unchanged."""
        assert host_auth.with_token(TOKEN_HOST, "o/r") is TOKEN_HOST


class TestAppJwt:
    def test_claims_and_signature(self) -> None:
        """The JWT verifies with the App's public key (RS256), `iss` is the App id, `iat` 60 s back, `exp` < 10 min."""
        token = app_jwt(APP, NOW)
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        claims = jwt.decode(token, KEY.public_key(), algorithms=["RS256"], options={"verify_exp": False,
                                                                                    "verify_iat": False})
        assert claims["iss"] == "4242"
        assert claims["iat"] == NOW - 60
        assert NOW < claims["exp"] <= NOW + 600


class TestInstallationTokens:
    def test_installation_found_per_repository_then_token(self, credentials: HostCredentials,
                                                          github: StandInGitHub) -> None:
        """Without installation_id, the repository's installation is asked once, then its token is made."""
        assert credentials.authorization(APP_HOST, "Owner/Repo") == "Bearer ghs_token1"
        assert [(r.method, r.url) for r in github.requests] == [
            ("GET", "https://api.github.test/repos/Owner/Repo/installation"),
            ("POST", "https://api.github.test/app/installations/77/access_tokens"),
        ]

    def test_cached_until_minutes_before_expiry(self, credentials: HostCredentials, github: StandInGitHub,
                                                clock: list[float]) -> None:
        """The token is reused while fresh and renewed `INSTALLATION_TOKEN_RENEW_SECONDS` before it lapses."""
        credentials.authorization(APP_HOST, "o/r")
        clock[0] = NOW + 3600 - defaults.INSTALLATION_TOKEN_RENEW_SECONDS - 1
        assert credentials.authorization(APP_HOST, "o/r") == "Bearer ghs_token1"
        clock[0] += 2
        assert credentials.authorization(APP_HOST, "o/r") == "Bearer ghs_token2"
        assert github.issued == 2

    def test_a_given_installation_id_is_not_looked_up(self, github: StandInGitHub, clock: list[float]) -> None:
        """With installation_id set, no lookup request is made."""
        host = HostConfig(name="gh", kind="github", api_url="https://api.github.test",
                          app=GitHubAppConfig(4242, Secret(PEM), Path("k.pem"), installation_id=9))
        HostCredentials(send=github.send, clock=lambda: clock[0]).authorization(host, "o/r")
        assert [r.url for r in github.requests] == ["https://api.github.test/app/installations/9/access_tokens"]

    def test_refused_renews_on_the_next_call(self, credentials: HostCredentials, github: StandInGitHub) -> None:
        """After a 401 the cached token is dropped: the next call gets a new one."""
        credentials.authorization(APP_HOST, "o/r")
        credentials.refused(APP_HOST, "o/r")
        assert credentials.authorization(APP_HOST, "o/r") == "Bearer ghs_token2"

    def test_concurrent_callers_wait_for_one_renewal(self, credentials: HostCredentials,
                                                     github: StandInGitHub) -> None:
        """Eight threads needing a token at once cause one access-token request and all get that token."""
        credentials.authorization(APP_HOST, "o/r")  # the installation lookup, out of the way
        credentials.refused(APP_HOST, "o/r")
        github.delay = 0.2
        got: list[str | None] = []
        threads = [threading.Thread(target=lambda: got.append(credentials.authorization(APP_HOST, "o/r")))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == ["Bearer ghs_token2"] * 8
        assert github.issued == 2

    def test_not_installed_says_what_to_do(self, clock: list[float]) -> None:
        """A repository the App is not installed on gives an error naming it and the fix."""
        creds = HostCredentials(send=lambda r: HttpResponse(404, b'{"message":"Not Found"}'), clock=lambda: clock[0])
        with pytest.raises(HostAuthError, match="not installed on o/r"):
            creds.authorization(APP_HOST, "o/r")

    def test_refusal_never_quotes_the_key(self, clock: list[float]) -> None:
        """A refused JWT's error names the status and what to check, never the key or the JWT."""
        creds = HostCredentials(send=lambda r: HttpResponse(401, b'{"message":"A JSON web token could not be '
                                                               b'decoded"}'), clock=lambda: clock[0])
        host = HostConfig(name="gh", kind="github", api_url="https://api.github.test",
                          app=GitHubAppConfig(4242, Secret(PEM), Path("k.pem"), installation_id=9))
        with pytest.raises(HostAuthError, match="HTTP 401") as caught:
            creds.authorization(host, "o/r")
        assert "PRIVATE KEY" not in str(caught.value) and app_jwt(APP, NOW)[:20] not in str(caught.value)


class TestCloneToken:
    def test_an_https_app_gets_the_installation_token(self, monkeypatch: pytest.MonkeyPatch,
                                                      credentials: HostCredentials) -> None:
        """An App host's HTTPS app clones with the installation token; an app's own token wins."""
        monkeypatch.setattr(host_auth, "CREDENTIALS", credentials)
        app = AppConfig(name="shop", host="gh", host_kind="github", repo="o/r", clone_url="https://github.test/o/r.git",
                        secret=Secret("webhook-secret-0123"))
        assert host_auth.with_clone_token(app, APP_HOST).clone_token == Secret("ghs_token1")
        own = AppConfig(name="shop", host="gh", host_kind="github", repo="o/r", clone_url="https://github.test/o/r",
                        secret=Secret("webhook-secret-0123"), clone_token=Secret("deploy-token-0123456"))
        assert host_auth.with_clone_token(own, APP_HOST) is own
        ssh = AppConfig(name="shop", host="gh", host_kind="github", repo="o/r", clone_url="git@github.test:o/r.git",
                        secret=Secret("webhook-secret-0123"))
        assert host_auth.with_clone_token(ssh, APP_HOST).clone_token is None

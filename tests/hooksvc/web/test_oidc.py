"""Single sign-on against a stand-in OpenID Connect provider (tests/helpers/fake_oidc_provider.py):
a login binds the session to the claims' name and role; a forged, misdirected, expired or replayed
sign-on is refused and audited (SPEC §11)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as redis_lib
import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey

from hooksvc import audit, defaults, keys
from hooksvc.config import OidcConfig, Secret
from hooksvc.errors import ConfigError
from hooksvc.operators import Role
from hooksvc.web import create_app
from hooksvc.web.oidc import STATE_COOKIE
from tests.helpers.config import make_config
from tests.helpers.fake_oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider, Misbehaviour, RunningProvider


def oidc_table(issuer: str) -> str:
    return f"""
        [server.oidc]
        issuer = "{issuer}"
        client_id = "{CLIENT_ID}"
        client_secret_env = "OIDC_SECRET"
        roles = {{ admin = ["group:ops"], deployer = ["group:dev"], viewer = ["user:vic"] }}
    """


@pytest.fixture
def running() -> Iterator[RunningProvider]:
    running = RunningProvider()
    yield running
    running.stop()


@pytest.fixture
def provider(running: RunningProvider) -> FakeOidcProvider:
    return running.provider


@pytest.fixture
def sso(tmp_path: Path, redis: redis_lib.Redis, provider: FakeOidcProvider) -> Flask:
    config = make_config(tmp_path, oidc_table(provider.url), env={"OIDC_SECRET": CLIENT_SECRET})
    return create_app(config, connection=redis, listeners=[])


@pytest.fixture
def browser(sso: Flask) -> FlaskClient:
    return sso.test_client()


def sign_on(browser: FlaskClient, next_url: str = "/") -> tuple[Any, str]:
    """Start at /login/oidc, let the provider answer its authorize request, and follow it back:
    the callback's answer and the callback URL (for replays)."""
    start = browser.get(f"/login/oidc?next={next_url}")
    assert start.status_code == 302, start.get_data(as_text=True)
    back = requests.get(start.location, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    parts = urlsplit(back.headers["Location"])
    assert parts.path == "/login/oidc/callback"
    callback = f"{parts.path}?{parts.query}"
    return browser.get(callback), callback


class TestLogin:
    def test_a_sign_on_starts_a_session_bound_to_the_claims(
        self, browser: FlaskClient, redis: redis_lib.Redis, provider: FakeOidcProvider,
    ) -> None:
        """The provider's user olga (group dev) lands on `next` as deployer olga; the login is audited."""
        start = browser.get("/login/oidc?next=/audit")
        query = parse_qs(urlsplit(start.location).query)
        assert start.location.startswith(f"{provider.url}/authorize?")
        assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
        assert query["redirect_uri"] == ["http://deploy.test/login/oidc/callback"]
        answer, _ = sign_on(browser, "/audit")
        assert answer.status_code == 302 and answer.location == "/audit"
        page = browser.get("/audit")
        assert page.status_code == 200
        assert 'id="operator">olga <span class="muted">(deployer)' in page.get_data(as_text=True)
        login = audit.recent(redis, operator="olga")[-1]
        assert (login.action, login.result, login.reason) == (audit.LOGIN, audit.OK, "single sign-on")

    def test_the_login_form_offers_single_sign_on(self, browser: FlaskClient) -> None:
        """With [server.oidc], the login page links to the sign-on, keeping `next`."""
        page = browser.get("/login?next=/audit").get_data(as_text=True)
        assert 'href="/login/oidc?next=/audit"' in page

    def test_the_highest_matching_role_wins_and_no_match_is_refused(
        self, browser: FlaskClient, provider: FakeOidcProvider, redis: redis_lib.Redis,
    ) -> None:
        """A user in ops and dev is admin; one matching no pattern gets 403 and no session."""
        provider.user = {"sub": "u-2", "preferred_username": "otto", "groups": ["dev", "ops"]}
        sign_on(browser)
        assert "otto <span class=\"muted\">(admin)" in browser.get("/").get_data(as_text=True)
        other = browser.application.test_client()
        provider.user = {"sub": "u-3", "preferred_username": "nina", "groups": ["sales"]}
        answer, _ = sign_on(other)
        assert answer.status_code == 403 and "nina has no role" in answer.get_data(as_text=True)
        assert other.get_cookie("hooksvc_session") is None
        assert audit.recent(redis)[0].result == audit.FAILED


class TestRefusals:
    @pytest.mark.parametrize("misbehaviour", [
        pytest.param(Misbehaviour(sign_with=RSAKey.generate_key(2048, parameters={"kid": "k1"})), id="forged"),
        pytest.param(Misbehaviour(issuer="https://evil.example"), id="issuer"),
        pytest.param(Misbehaviour(audience="another-client"), id="audience"),
        pytest.param(Misbehaviour(expires_in=-3600), id="expired"),
        pytest.param(Misbehaviour(nonce="not-the-nonce"), id="nonce"),
    ])
    def test_a_bad_id_token_is_refused(
        self, browser: FlaskClient, provider: FakeOidcProvider, redis: redis_lib.Redis, misbehaviour: Misbehaviour,
    ) -> None:
        """An ID token signed by another key, for another issuer or client, expired, or with another
        nonce opens no session; the failure is audited, without the token."""
        provider.misbehave = misbehaviour
        answer, _ = sign_on(browser)
        assert answer.status_code == 401
        assert "could not be verified" in answer.get_data(as_text=True)
        assert browser.get_cookie("hooksvc_session") is None
        assert browser.get("/").status_code == 302
        [entry] = audit.recent(redis)
        assert (entry.action, entry.result, entry.operator) == (audit.LOGIN, audit.FAILED, None)
        assert "eyJ" not in entry.reason

    def test_a_callback_replayed_is_refused(self, browser: FlaskClient, provider: FakeOidcProvider) -> None:
        """The callback's state works once: replaying it, even with its state cookie put back (a captured
        request), opens nothing and asks the provider nothing."""
        answer, callback = sign_on(browser)
        assert answer.status_code == 302
        browser.post("/logout")
        requests_before = provider.token_requests
        state = parse_qs(urlsplit(callback).query)["state"][0]
        browser.set_cookie(STATE_COOKIE, state, path="/login/oidc")
        replay = browser.get(callback)
        assert replay.status_code == 400 and "already used" in replay.get_data(as_text=True)
        assert provider.token_requests == requests_before
        assert browser.get("/").status_code == 302

    def test_a_callback_in_another_browser_is_refused(self, browser: FlaskClient, sso: Flask) -> None:
        """A sign-on started in one browser cannot be finished in another (login CSRF)."""
        start = browser.get("/login/oidc")
        back = requests.get(start.location, allow_redirects=False, timeout=10)
        parts = urlsplit(back.headers["Location"])
        victim = sso.test_client()
        answer = victim.get(f"{parts.path}?{parts.query}")
        assert answer.status_code == 400 and victim.get_cookie("hooksvc_session") is None
        assert audit.recent(browser.application.extensions["hooksvc"].store.redis) == []  # names no one

    def test_starts_from_one_address_are_capped(
        self, browser: FlaskClient, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An anonymous client cannot make Redis keep sign-on records without bound: past the cap, 429."""
        monkeypatch.setattr(defaults, "OIDC_STARTS_PER_ADDRESS", 3)
        assert [browser.get("/login/oidc").status_code for _ in range(4)] == [302, 302, 302, 429]
        assert len(redis.keys(keys.oidc_login("*"))) == 3

    def test_a_provider_that_is_down_is_a_clear_502(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """An unreachable issuer gives a page saying so, not a traceback."""
        config = make_config(tmp_path, oidc_table("http://127.0.0.1:9"), env={"OIDC_SECRET": CLIENT_SECRET})
        answer = create_app(config, connection=redis, listeners=[]).test_client().get("/login/oidc")
        assert answer.status_code == 502 and "cannot be reached" in answer.get_data(as_text=True)

    def test_sessions_end_when_single_sign_on_is_removed(
        self, browser: FlaskClient, tmp_path: Path, redis: redis_lib.Redis,
    ) -> None:
        """A session the provider opened opens nothing on a server configured without it."""
        sign_on(browser)
        cookie = browser.get_cookie("hooksvc_session")
        assert cookie is not None
        plain = create_app(make_config(tmp_path), connection=redis, listeners=[]).test_client()
        plain.set_cookie("hooksvc_session", cookie.value)
        assert plain.get("/").status_code == 302


class TestConfig:
    def _oidc(self, **roles: tuple[str, ...]) -> OidcConfig:
        return OidcConfig(issuer="https://id.example", client_id="c", client_secret=Secret("s"),
                          roles={Role(k): v for k, v in roles.items()})

    def test_role_patterns(self) -> None:
        """group:, user: and email: (only when verified) and * each grant their role; the highest wins."""
        oidc = self._oidc(admin=("user:root",), deployer=("email:d@x.org",), viewer=("*",))
        assert oidc.role_for({"sub": "1", "preferred_username": "root"}) is Role.ADMIN
        assert oidc.role_for({"sub": "1", "email": "d@x.org", "email_verified": True}) is Role.DEPLOYER
        assert oidc.role_for({"sub": "1", "email": "d@x.org", "email_verified": False}) is Role.VIEWER
        assert self._oidc(deployer=("group:dev",)).role_for({"sub": "1", "groups": ["ops"]}) is None

    @pytest.mark.parametrize(("table", "problem"), [
        ('issuer = "id.example"\nclient_id = "c"\nclient_secret_env = "S"\nroles = { viewer = ["*"] }',
         "server.oidc.issuer: required"),
        ('issuer = "https://id.example"\nclient_secret_env = "S"\nroles = { viewer = ["*"] }',
         "server.oidc.client_id: required"),
        ('issuer = "https://id.example"\nclient_id = "c"\nroles = { viewer = ["*"] }',
         "server.oidc.client_secret_env: required"),
        ('issuer = "https://id.example"\nclient_id = "c"\nclient_secret_env = "S"\nroles = { root = ["*"] }',
         "server.oidc.roles.root: expected one of viewer, deployer, admin"),
        ('issuer = "https://id.example"\nclient_id = "c"\nclient_secret_env = "S"\nroles = { viewer = ["dev"] }',
         'server.oidc.roles.viewer: expected a list of "group:NAME"'),
    ])
    def test_bad_tables_name_the_key(self, tmp_path: Path, table: str, problem: str) -> None:
        """Each mistake in [server.oidc] is refused naming its key."""
        with pytest.raises(ConfigError) as caught:
            make_config(tmp_path, f"[server.oidc]\n{table}\n", env={"S": "a-secret-of-enough-length"})
        assert problem in str(caught.value)

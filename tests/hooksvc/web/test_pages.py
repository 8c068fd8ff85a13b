"""The HTML pages: dashboard, deployment page, login — through Flask's client and a real Chromium.

The browser tests drive Debian's headless `chromium` over the DevTools protocol on a pipe
(`--remote-debugging-pipe`), so they need no extra Python package and no matching driver
binary; they run against a real threaded werkzeug server on 127.0.0.1 and leave screenshots in
`test-output/screenshots/` for people to look at.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as redis_lib
import requests
from flask import Flask
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.serving import BaseWSGIServer, make_server

from hooksvc import defaults
from hooksvc.config import Config
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.presentation import format_ago
from hooksvc.release_steps import ReleaseStep, finished_line, started_line
from hooksvc.sessions import SessionStore, credential_fingerprint
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from hooksvc.web.pages import format_duration, safe_next
from tests.helpers.config import DAN_TOKEN, OPERATOR_ENV, OPERATORS, VERA_TOKEN, make_config
from tests.helpers.redis_server import RedisServer

TOKEN = "operator-token-1"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SHA_A, SHA_B, SHA_C = "a1" * 20, "b2" * 20, "c3" * 20
XSS = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def basic(password: str, user: str = "operator") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def push(app: str, sha: str, ref: str = "refs/heads/main") -> NewDeployment:
    return NewDeployment(app, sha, ref, Trigger.PUSH, delivery_id=f"delivery-{sha[:6]}")


def run(store: DeploymentStore, new: NewDeployment, end: DeploymentState | None, *log: str, error: str = "") -> str:
    """Submit and start a deployment, write its log, and end it in `end` (None: leave it running)."""
    dep = store.intake.submit([new]).deployments[0]
    store.start(dep.id, "")
    for line in log:
        store.logs.append(dep.id, line)
    if end is not None:
        store.finish(dep.id, end, error=error, live_sha=new.sha if end is DeploymentState.SUCCEEDED else None)
    return dep.id


def login(client: FlaskClient, token: str = TOKEN, next_url: str = "/") -> Any:
    return client.post("/login", data={"token": token, "next": next_url})


class TestLoginRequired:
    def test_browser_without_credentials_is_sent_to_login(self, client: FlaskClient) -> None:
        """A request without a token or session is redirected to the login form, remembering where it was going."""
        resp = client.get("/deployments/7?tab=log")
        assert resp.status_code == 302
        target = urlsplit(resp.location)
        assert target.path == "/login" and parse_qs(target.query) == {"next": ["/deployments/7?tab=log"]}

    def test_log_endpoint_answers_401_json(self, client: FlaskClient) -> None:
        """The script's log endpoint answers 401 JSON instead of redirecting, so the script can react."""
        resp = client.get("/deployments/1/log.json")
        assert resp.status_code == 401 and resp.json == {"error": "signature or token rejected"}

    def test_bad_bearer_token_is_401_without_echo(self, client: FlaskClient) -> None:
        """A wrong bearer token gets a generic 401 page that does not repeat the token."""
        resp = client.get("/", headers={"Authorization": "Bearer guess-123"})
        assert resp.status_code == 401
        assert "guess-123" not in resp.get_data(as_text=True)
        assert "WWW-Authenticate" not in resp.headers

    def test_bad_basic_password_is_challenged_again(self, client: FlaskClient) -> None:
        """A wrong basic-auth password gets 401 with a Basic challenge so the browser asks again."""
        resp = client.get("/", headers=basic("nope"))
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")

    def test_metrics_and_static_need_no_login(self, client: FlaskClient) -> None:
        """The follow script is served without a session (it holds nothing secret)."""
        assert client.get("/static/follow.js").status_code == 200


class TestTokenAuth:
    def test_bearer_token_opens_the_pages(self, client: FlaskClient) -> None:
        """`Authorization: Bearer <token>` opens the dashboard, as for the API."""
        assert client.get("/", headers=BEARER).status_code == 200

    @pytest.mark.parametrize("user", ["operator", "", "anything"])
    def test_basic_auth_with_the_token_as_password(self, client: FlaskClient, user: str) -> None:
        """HTTP basic auth works with any user name and the token as password."""
        assert client.get("/", headers=basic(TOKEN, user)).status_code == 200
        assert client.get("/", headers=basic("operator-token-2", user)).status_code == 200

    def test_public_read_needs_no_token(self, tmp_path: Path, redis: redis_lib.Redis, store: DeploymentStore) -> None:
        """With `public_read = true` anyone may read the dashboard and deployment pages."""
        dep_id = run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED)
        client = create_app(make_config(tmp_path, public_read="true"), connection=redis, listeners=[]).test_client()
        assert client.get("/").status_code == 200
        assert client.get(f"/deployments/{dep_id}").status_code == 200
        assert client.get(f"/deployments/{dep_id}/log.json").status_code == 200


class TestLoginForm:
    def test_form_is_shown(self, client: FlaskClient) -> None:
        """GET /login shows a password field and the validated `next` target."""
        page = client.get("/login?next=/deployments/3").get_data(as_text=True)
        assert 'type="password"' in page and 'name="token"' in page
        assert 'value="/deployments/3"' in page

    def test_good_token_sets_a_hardened_session_cookie(self, client: FlaskClient) -> None:
        """The right token logs in with an HttpOnly, SameSite=Lax cookie and returns to `next`."""
        resp = login(client, next_url="/deployments/3")
        assert resp.status_code == 302 and resp.location == "/deployments/3"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert TOKEN not in cookie
        assert client.get("/").status_code == 200

    def test_wrong_token_shows_the_form_again(self, client: FlaskClient) -> None:
        """A wrong token gets the form again with a generic error, never the typed token, and no session."""
        resp = login(client, token="typo-token-zz")
        page = resp.get_data(as_text=True)
        assert resp.status_code == 401
        assert "That token was not accepted." in page
        assert "typo-token-zz" not in page
        assert client.get("/").status_code == 302

    def test_no_page_ever_contains_the_token(self, client: FlaskClient, store: DeploymentStore) -> None:
        """After logging in, neither the pages nor the cookie show the token."""
        dep_id = run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED)
        login(client)
        for url in ("/", f"/deployments/{dep_id}", "/login"):
            assert TOKEN not in client.get(url).get_data(as_text=True)

    @pytest.mark.parametrize("target", [
        "https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
        "evil.example", "/ok\r\nSet-Cookie: x=1", "",
    ])
    def test_next_only_allows_relative_paths(self, client: FlaskClient, target: str) -> None:
        """After login the redirect goes to a path on this site only; anything else goes to the dashboard."""
        resp = login(client, next_url=target)
        assert resp.status_code == 302 and resp.location == "/"

    def test_safe_next_keeps_a_path_with_query(self) -> None:
        """A plain path with a query string is kept as the post-login target."""
        assert safe_next("/deployments/5?x=1") == "/deployments/5?x=1"

    def test_cross_site_login_post_is_refused(self, client: FlaskClient) -> None:
        """A login POST whose Origin is another site is refused and sets no session."""
        resp = client.post("/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
        assert resp.status_code == 403
        assert client.get("/").status_code == 302

    def test_huge_login_form_is_refused_unread(self, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
        """A multi-megabyte login POST of empty fields is refused with 413 before any field is parsed."""
        monkeypatch.setattr("werkzeug.formparser.parse_qsl", lambda *a, **k: pytest.fail("the form was parsed"))
        resp = client.post("/login", data=b"a=&" * 1_600_000, content_type="application/x-www-form-urlencoded")
        assert resp.status_code == 413
        assert client.get("/").status_code == 302

    def test_logout_is_post_only_and_ends_the_session(self, client: FlaskClient) -> None:
        """POST /logout ends the session; a GET (a link, an image) cannot log anyone out."""
        login(client)
        assert client.get("/logout").status_code == 405
        assert client.get("/").status_code == 200
        resp = client.post("/logout")
        assert resp.status_code == 302 and resp.location == "/login"
        assert client.get("/").status_code == 302

    def test_a_changed_token_ends_the_sessions_it_opened(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """A server whose tokens no longer include the one that logged in opens nothing with that session."""
        client = create_app(make_config(tmp_path), connection=redis, listeners=[]).test_client()
        login(client)
        assert client.get("/").status_code == 200
        changed_config = make_config(tmp_path, env={"HOOKSVC_API_TOKENS": "new-operator-token-9"})
        changed = create_app(changed_config, connection=redis, listeners=[])
        cookie = client.get_cookie("hooksvc_session")
        assert cookie is not None
        other = changed.test_client()
        other.set_cookie("hooksvc_session", cookie.value)
        assert other.get("/").status_code == 302

    def test_a_cookie_set_before_login_never_becomes_a_session(self, client: FlaskClient) -> None:
        """Logging in issues a new id: one planted in the browser beforehand (fixation) opens nothing."""
        client.set_cookie("hooksvc_session", "planted-by-someone-else")
        resp = login(client)
        assert "planted-by-someone-else" not in resp.headers["Set-Cookie"]
        assert client.get("/").status_code == 200

    def test_wrong_tokens_are_throttled_on_the_form(self, client: FlaskClient) -> None:
        """After its allowance of wrong tokens an address gets 429 with Retry-After, even for the right one."""
        for n in range(defaults.LOGIN_FAILURES_PER_ADDRESS):
            assert login(client, token=f"typo-{n}").status_code == 401
        resp = login(client)
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
        assert "Too many wrong tokens" in resp.get_data(as_text=True)
        assert "Set-Cookie" not in resp.headers

    def test_cookie_is_secure_behind_https(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """When public_url is https, the session cookie is marked Secure."""
        config = make_config(tmp_path)
        config = replace(config, server=replace(config.server, public_url="https://deploy.example"))
        resp = login(create_app(config, connection=redis, listeners=[]).test_client())
        assert "Secure" in resp.headers["Set-Cookie"]


class TestWithoutTokens:
    """A server with no API token configured: no one can log in, so no cookie may open a page."""

    @pytest.fixture
    def tokenless(self, tmp_path: Path, redis: redis_lib.Redis) -> Flask:
        config = make_config(tmp_path, env={"HOOKSVC_API_TOKENS": ""})
        assert config.server.api_tokens == ()
        return create_app(config, connection=redis, listeners=[])

    def test_a_session_record_opens_nothing_without_tokens(
        self, tokenless: Flask, store: DeploymentStore, redis: redis_lib.Redis,
    ) -> None:
        """Even a session record in Redis (left from when a token was configured) opens no page."""
        dep_id = run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED)
        session_id = SessionStore(redis, 60).create(credential=credential_fingerprint(""), address="127.0.0.1")
        client = tokenless.test_client()
        client.set_cookie("hooksvc_session", session_id)
        assert client.get("/").status_code == 302
        assert client.get(f"/deployments/{dep_id}").status_code == 302
        assert client.get(f"/deployments/{dep_id}/log.json").status_code == 401


class TestDashboard:
    def test_apps_show_repo_ref_live_sha_and_state(self, client: FlaskClient, store: DeploymentStore) -> None:
        """Each app card shows its repo, ref pattern, live sha, newest state and last deployments."""
        first = run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED)
        second = run(store, push("shop", SHA_B), DeploymentState.FAILED, error="health check failed")
        page = client.get("/", headers=BEARER).get_data(as_text=True)
        assert "acme/shop" in page and "refs/heads/main" in page
        assert "refs/tags/v*" in page and "refs/heads/release/*" in page
        assert f'href="/deployments/{first}" title="{SHA_A}">{SHA_A[:12]}' in page  # live sha → its deployment
        assert 'class="card app app-failed" id="app-shop"' in page
        assert f'href="/deployments/{second}"' in page
        assert "never deployed" in page

    def test_a_running_deployment_shows_before_a_queued_one(self, client: FlaskClient, store: DeploymentStore) -> None:
        """An app with one deployment running and a newer one queued is shown as running."""
        run(store, push("shop", SHA_A), None)
        store.intake.submit([push("shop", SHA_B)])
        page = client.get("/", headers=BEARER).get_data(as_text=True)
        assert 'class="card app app-running" id="app-shop"' in page

    def test_newest_deployments_are_listed_newest_first(self, client: FlaskClient, store: DeploymentStore) -> None:
        """The newest-deployments table lists every app's deployments, newest first, each with a link."""
        ids = [
            run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED),
            run(store, push("blog", SHA_B, "refs/tags/v1.2"), DeploymentState.ERROR),
            run(store, push("wiki", SHA_C, "refs/heads/release/1"), None),
        ]
        page = client.get("/", headers=BEARER).get_data(as_text=True)
        table = page[page.index("Newest deployments"):]
        positions = [table.index(f'<a href="/deployments/{i}">{i}</a>') for i in ids]
        assert positions == sorted(positions, reverse=True)
        assert '<span class="badge state-running">running</span>' in table
        assert '<span class="badge state-error">error</span>' in table
        assert ">v1.2<" in table

    def test_busy_dashboard_refreshes_itself(self, client: FlaskClient, store: DeploymentStore) -> None:
        """While something runs the dashboard reloads itself; when all is quiet it does not."""
        assert 'http-equiv="refresh"' not in client.get("/", headers=BEARER).get_data(as_text=True)
        run(store, push("shop", SHA_A), None)
        assert 'http-equiv="refresh"' in client.get("/", headers=BEARER).get_data(as_text=True)

    def test_phone_friendly_markup(self, client: FlaskClient) -> None:
        """The pages declare a device-width viewport and a narrow-screen layout."""
        page = client.get("/", headers=BEARER).get_data(as_text=True)
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert "@media (max-width: 640px)" in page


class TestDeploymentPage:
    def test_shows_every_field_and_the_log(self, client: FlaskClient, store: DeploymentStore) -> None:
        """The page shows the record's fields, its times, its error and its log."""
        dep_id = run(store, push("shop", SHA_A), DeploymentState.FAILED, "building web", "web unhealthy",
                     error="service web: health check failed")
        dep = store.get(dep_id)
        page = client.get(f"/deployments/{dep_id}", headers=BEARER).get_data(as_text=True)
        for text in (SHA_A, "refs/heads/main", "push", "delivery-a1a1a1", "acme/shop",
                     "service web: health check failed", "building web\nweb unhealthy\n",
                     '<span class="badge state-failed" id="state">failed</span>'):
            assert text in page
        assert dep.started_at is not None and dep.finished_at is not None
        for ts in (dep.created_at, dep.started_at, dep.finished_at):
            assert time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) in page
        assert "follow.js" not in page  # a finished log needs no following

    def test_unknown_deployment_is_a_404_page(self, client: FlaskClient) -> None:
        """An unknown id answers 404 with an HTML page, not JSON."""
        resp = client.get("/deployments/999", headers=BEARER)
        assert resp.status_code == 404 and resp.mimetype == "text/html"
        assert "no deployment &#39;999&#39;" in resp.get_data(as_text=True)

    def test_log_and_fields_are_escaped(self, client: FlaskClient, store: DeploymentStore) -> None:
        """Log lines, errors and refs are shown as text: a `<script>` in them is escaped, never run."""
        dep_id = run(store, push("shop", SHA_A, f"refs/heads/{XSS}"), DeploymentState.FAILED, XSS, error=XSS)
        for url in (f"/deployments/{dep_id}", "/"):
            page = client.get(url, headers=BEARER).get_data(as_text=True)
            assert "<script>window.pwned" not in page and "<img src=x" not in page
        page = client.get(f"/deployments/{dep_id}", headers=BEARER).get_data(as_text=True)
        escaped = "&lt;script&gt;window.pwned = 1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned = 2&#34;&gt;"
        assert escaped in page

    def test_running_page_follows_with_and_without_javascript(
        self, client: FlaskClient, store: DeploymentStore
    ) -> None:
        """A running deployment's page loads the follow script and, for no-JS browsers, reloads itself."""
        dep_id = run(store, push("shop", SHA_A), None, "step 1")
        page = client.get(f"/deployments/{dep_id}", headers=BEARER).get_data(as_text=True)
        assert '<script src="/static/follow.js" defer></script>' in page
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
        assert "step 1\n" in page

    def test_security_headers(self, client: FlaskClient, store: DeploymentStore) -> None:
        """Pages are not cached, not framed, and run only the site's own scripts."""
        resp = client.get("/", headers=BEARER)
        assert resp.headers["Cache-Control"] == "no-store"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp

    def test_plain_text_log_for_a_session(self, client: FlaskClient, store: DeploymentStore) -> None:
        """log.txt gives the whole log as text to a logged-in browser (the API's log route needs a bearer)."""
        dep_id = run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED, XSS)
        login(client)
        resp = client.get(f"/deployments/{dep_id}/log.txt")
        assert resp.mimetype == "text/plain" and f"{XSS}\n" in resp.get_data(as_text=True)

    def test_redis_down_is_a_503_page(self, tmp_path: Path) -> None:
        """Without Redis the pages answer 503 with an HTML explanation, not a traceback."""
        server = RedisServer(tmp_path)
        server.start()
        conn = redis_lib.Redis(port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                               retry=Retry(NoBackoff(), 0))
        app = create_app(make_config(tmp_path, public_read="true"), connection=conn, listeners=[])
        server.stop()
        resp = app.test_client().get("/")
        assert resp.status_code == 503 and resp.mimetype == "text/html"
        assert "Redis is unreachable" in resp.get_data(as_text=True)


class TestLogEndpoint:
    def test_returns_lines_after_the_cursor(self, client: FlaskClient, store: DeploymentStore) -> None:
        """log.json answers the lines after `after` and a cursor for the next call."""
        dep_id = run(store, push("shop", SHA_A), None, "one", "two")
        first = client.get(f"/deployments/{dep_id}/log.json", headers=BEARER).json
        assert first is not None and first["lines"][-2:] == ["one", "two"] and not first["final"]
        store.logs.append(dep_id, "three")
        second = client.get(f"/deployments/{dep_id}/log.json?after={first['cursor']}", headers=BEARER).json
        assert second is not None and second["lines"] == ["three"] and second["state"] == "running"

    def test_waits_for_new_lines(self, client: FlaskClient, store: DeploymentStore) -> None:
        """With wait=1 on a running deployment the request returns as soon as a line arrives."""
        dep_id = run(store, push("shop", SHA_A), None)
        cursor = client.get(f"/deployments/{dep_id}/log.json", headers=BEARER).json["cursor"]  # type: ignore[index]
        timer = threading.Timer(0.3, store.logs.append, (dep_id, "late line"))
        timer.start()
        started = time.monotonic()
        answer = client.get(f"/deployments/{dep_id}/log.json?wait=1&after={cursor}", headers=BEARER).json
        timer.join()
        assert answer is not None and answer["lines"] == ["late line"]
        assert time.monotonic() - started < 3

    def test_final_answer_carries_the_last_lines(self, client: FlaskClient, store: DeploymentStore) -> None:
        """The answer that reports the end also holds every line written up to the end, without waiting."""
        dep_id = run(store, push("shop", SHA_A), None, "one")
        cursor = client.get(f"/deployments/{dep_id}/log.json", headers=BEARER).json["cursor"]  # type: ignore[index]
        store.logs.append(dep_id, "two")
        store.finish(dep_id, DeploymentState.SUCCEEDED, live_sha=SHA_A)
        started = time.monotonic()
        answer = client.get(f"/deployments/{dep_id}/log.json?wait=1&after={cursor}", headers=BEARER).json
        assert answer is not None and answer["final"] and answer["state"] == "succeeded"
        assert answer["lines"] == ["two", "finished: succeeded"]
        assert answer["deployment"]["finished_at"] and answer["duration"]
        assert time.monotonic() - started < 1

    @pytest.mark.parametrize("deployment_id", ["next", "1:log"])
    def test_a_name_that_is_not_an_id_is_404(
            self, client: FlaskClient, store: DeploymentStore, deployment_id: str) -> None:
        """The id counter and a log stream, though under the deployment prefix, are no deployment: 404, not 500."""
        assert run(store, push("shop", SHA_A), DeploymentState.SUCCEEDED, "a line") == "1"
        assert client.get(f"/deployments/{deployment_id}", headers=BEARER).status_code == 404
        assert client.get(f"/deployments/{deployment_id}/log.txt", headers=BEARER).status_code == 404
        resp = client.get(f"/deployments/{deployment_id}/log.json", headers=BEARER)
        assert resp.status_code == 404 and resp.json == {"error": f"no deployment {deployment_id!r}"}

    def test_bad_cursor_and_unknown_id(self, client: FlaskClient) -> None:
        """A malformed cursor is a 400 and an unknown deployment a 404, both JSON."""
        assert client.get("/deployments/1/log.json?after=abc", headers=BEARER).status_code == 400
        resp = client.get("/deployments/1/log.json?after=99999999999999999999-0", headers=BEARER)
        assert resp.status_code == 400 and "'after' must be a log cursor" in resp.json["error"]
        resp = client.get("/deployments/999/log.json", headers=BEARER)
        assert resp.status_code == 404 and resp.json == {"error": "no deployment '999'"}


class TestFormatting:
    def test_durations_and_ages(self) -> None:
        """Durations and ages read naturally at every scale."""
        assert [format_duration(s) for s in (None, 4.4, 65, 3725)] == ["", "4s", "1m 05s", "1h 02m"]
        now = 1_000_000.0
        assert [format_ago(now - s, now) for s in (3, 42, 600, 7200, 200000)] == [
            "just now", "42s ago", "10m ago", "2h ago", "2d ago"]


# -- in a real browser ---------------------------------------------------------------------------


class Chromium:
    """Debian's headless Chromium, driven over the DevTools protocol on a pipe (NUL-separated JSON on fds 3/4)."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        child_reads, self._commands = os.pipe()
        self._answers, child_writes = os.pipe()

        def place_pipe_fds() -> None:
            # Chromium reads commands on fd 3 and answers on fd 4. Moving the ends high first means
            # the dup2 calls below can never clobber each other.
            high_in = fcntl.fcntl(child_reads, fcntl.F_DUPFD, 100)
            high_out = fcntl.fcntl(child_writes, fcntl.F_DUPFD, 100)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--mute-audio", f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=place_pipe_fds, pass_fds=(3, 4),
        )
        os.close(child_reads)
        os.close(child_writes)
        self._buffer = b""
        self._last_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        """Send one command and return its result; events read meanwhile are dropped."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\0")
                reply = json.loads(raw)
                if reply.get("id") == self._last_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method} failed: {reply['error']}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} within {timeout}s")
            ready, _, _ = select.select([self._answers], [], [], left)
            if ready:
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe (did it crash?)")
                self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._answers)


class Tab:
    """One page in its own browser context (no cookies shared with other tests)."""

    def __init__(self, browser: Chromium, viewport: dict[str, Any]) -> None:
        self.browser = browser
        self.context = browser.send("Target.createBrowserContext")["browserContextId"]
        target = browser.send("Target.createTarget", {"url": "about:blank", "browserContextId": self.context})
        self.session = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})[
            "sessionId"]
        self.resize(viewport)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def resize(self, viewport: dict[str, Any]) -> None:
        self.send("Emulation.setDeviceMetricsOverride", viewport)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JavaScript expression until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} stayed falsy for {timeout}s; page: {self.text()[:2000]!r}")
            time.sleep(0.1)

    def _await_new_document(self) -> None:
        self.wait_for("!window.__oldDocument && document.readyState === 'complete'")

    def goto(self, url: str) -> None:
        self.evaluate("window.__oldDocument = true")
        self.send("Page.navigate", {"url": url})
        self._await_new_document()

    def submit_login(self, token: str) -> None:
        self.evaluate("window.__oldDocument = true")
        self.evaluate(f"document.getElementById('token').value = {json.dumps(token)}; "
                      "document.querySelector('main form').requestSubmit()")
        self._await_new_document()

    def path(self) -> str:
        return str(self.evaluate("location.pathname + location.search"))

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def screenshot(self, name: str) -> Path:
        """Save the whole page (not just the viewport) as test-output/screenshots/<name>.png."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        })
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.browser.send("Target.disposeBrowserContext", {"browserContextId": self.context})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): browser tests need it")
    chromium = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.send("Browser.getVersion", timeout=30)
        yield chromium
    finally:
        chromium.close()


class LiveServer:
    """The Flask app on a real threaded werkzeug server on 127.0.0.1, in a thread."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(config: Config, redis: redis_lib.Redis) -> Iterator[LiveServer]:
    server = LiveServer(create_app(config, connection=redis, listeners=[]))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live(tmp_path: Path, redis: redis_lib.Redis) -> Iterator[LiveServer]:
    """A live server that needs a token (or a login)."""
    yield from serve(make_config(tmp_path), redis)


@pytest.fixture
def public_live(tmp_path: Path, redis: redis_lib.Redis) -> Iterator[LiveServer]:
    """A live server with `public_read = true`."""
    yield from serve(make_config(tmp_path, public_read="true"), redis)


@pytest.fixture
def tab(browser: Chromium) -> Iterator[Tab]:
    page = Tab(browser, PHONE)
    try:
        yield page
    finally:
        page.close()


def realistic_history(store: DeploymentStore) -> dict[str, str]:
    """A few deployments of every kind, as a dashboard would show after a day's work."""
    ids = {
        "shop_old": run(store, push("shop", "5e1f0c2b" * 5), DeploymentState.SUCCEEDED, "compose build", "rolled 2/2"),
        "blog": run(store, push("blog", "77aa0912" * 5, "refs/tags/v2.4.1"), DeploymentState.SUCCEEDED, "ok"),
        "wiki": run(store, push("wiki", "0bad0bad" * 5, "refs/heads/release/3"), DeploymentState.FAILED,
                    "service web: unhealthy", error="service web: health check failed after 120s; old containers kept"),
        "shop": run(store, push("shop", "9c4d2e7a" * 5), None,
                    "fetching 9c4d2e7a from the mirror", "compose build web worker", "#5 [web 2/4] RUN pip install ."),
    }
    ids["queued"] = store.intake.submit([push("shop", "31f00d5e" * 5)]).deployments[0].id
    return ids


class TestInBrowser:
    def test_login_then_dashboard(self, tab: Tab, live: LiveServer, store: DeploymentStore) -> None:
        """A browser without a session lands on the login form, logs in with the token and sees the dashboard."""
        ids = realistic_history(store)
        tab.goto(f"{live.url}/")
        assert tab.path() == "/login?next=/"
        tab.screenshot("login-phone")
        tab.submit_login("wrong-token")
        assert "That token was not accepted." in tab.text()
        tab.submit_login(TOKEN)
        assert tab.path() == "/"
        text = tab.text()
        for expected in ("shop", "blog", "wiki", "acme/shop", "refs/tags/v*", "refs/heads/release/*",
                         "Newest deployments", "running", "failed", "succeeded"):
            assert expected in text
        assert tab.evaluate(f"!!document.querySelector('a[href=\"/deployments/{ids['shop']}\"]')")
        assert TOKEN not in str(tab.evaluate("document.documentElement.outerHTML"))
        # Nothing overflows sideways on a phone: the layout fits 390 CSS pixels.
        assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        tab.screenshot("dashboard-phone")
        tab.resize(DESKTOP)
        tab.goto(f"{live.url}/")
        tab.screenshot("dashboard-desktop")

    def test_deployment_log_follows_live(self, tab: Tab, public_live: LiveServer, store: DeploymentStore) -> None:
        """Lines appended while the page is open appear in it, as text, and the end of the deployment shows."""
        ids = realistic_history(store)
        dep_id = ids["shop"]
        tab.goto(f"{public_live.url}/deployments/{dep_id}")
        tab.wait_for("document.getElementById('follow-status').textContent === 'following…'")
        assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for line in ("#5 [web 3/4] COPY . /app", XSS, "web-2 healthy after 4.1s"):
            store.logs.append(dep_id, line)
        tab.wait_for("document.getElementById('log').textContent.includes('web-2 healthy after 4.1s')")
        log_text = tab.evaluate("document.getElementById('log').textContent")
        assert XSS in log_text  # shown as text...
        # ...and never run.
        assert tab.evaluate("window.pwned === undefined && !document.querySelector('#log script, #log img')")
        tab.screenshot("deployment-running-phone")
        store.logs.append(dep_id, "removed old containers of web")
        store.finish(dep_id, DeploymentState.SUCCEEDED, live_sha="9c4d2e7a" * 5)
        tab.wait_for("document.getElementById('state').textContent === 'succeeded'")
        tab.wait_for("document.getElementById('follow-status').textContent === 'finished'")
        assert "finished: succeeded" in tab.evaluate("document.getElementById('log').textContent")
        assert tab.evaluate("document.getElementById('finished-at').textContent").endswith(" UTC")
        tab.screenshot("deployment-finished-phone")
        tab.resize(DESKTOP)
        tab.goto(f"{public_live.url}/deployments/{ids['wiki']}")
        assert "health check failed after 120s" in tab.text()
        tab.screenshot("deployment-failed-desktop")

    def test_deployment_page_without_javascript(
        self, tab: Tab, public_live: LiveServer, store: DeploymentStore
    ) -> None:
        """With JavaScript off, the deployment page still shows the log so far."""
        dep_id = run(store, push("shop", SHA_A), None, "step one", "step two")
        tab.send("Emulation.setScriptExecutionDisabled", {"value": True})
        tab.goto(f"{public_live.url}/deployments/{dep_id}")
        text = tab.text()
        assert "step one\nstep two" in text and "running" in text

    def test_unknown_deployment_page(self, tab: Tab, public_live: LiveServer) -> None:
        """An unknown deployment shows a readable not-found page in the browser."""
        tab.goto(f"{public_live.url}/deployments/424242")
        assert "Not found" in tab.text() and "no deployment '424242'" in tab.text()

    def test_deployment_page_lists_its_release_steps(
        self, tab: Tab, public_live: LiveServer, store: DeploymentStore
    ) -> None:
        """The page lists each release step that ran, from the log: phase, service, argv and outcome; the
        steps' output stays in the log below."""
        migrate = ReleaseStep("web", ("python", "manage.py", "migrate", "--noinput"))
        clear = ReleaseStep("web", ("python", "manage.py", "clearsessions"))
        error = ("post_deploy step 1 of 1 (web: python manage.py clearsessions) failed (exit 1) in 0.9s; "
                 "the new release is live")
        dep_id = run(store, push("shop", SHA_B), DeploymentState.FAILED,
                     f"==> push of shop ({SHA_B}), worker pid 4242 (+0.0s)",
                     "==> rolling out (rolling) (+0.4s)", "building images", " web  Built",
                     started_line("pre_deploy", 1, 1, migrate),
                     "  Operations to perform:", "    Apply all migrations: admin, auth, shop",
                     "  Running migrations:", "    Applying shop.0042_order_status... OK",
                     finished_line("pre_deploy", 1, 1, migrate, True, "(exit 0) in 3.2s"),
                     "plan:", "  db: unchanged (config hash and image unchanged)",
                     "  web: rolling (image changed (06df7e712e79 -> b4a1419ee0fa))",
                     "web: healthy after 2.1s", "rollout of shop done in 9.8s",
                     started_line("post_deploy", 1, 1, clear),
                     "  django.db.utils.OperationalError: (2013, 'Lost connection to MySQL server')",
                     finished_line("post_deploy", 1, 1, clear, False, "(exit 1) in 0.9s"),
                     f"failed: {error}", error=error)
        tab.resize(DESKTOP)
        tab.goto(f"{public_live.url}/deployments/{dep_id}")
        rows = tab.evaluate("[...document.querySelectorAll('#release-steps tbody tr')].map(r => r.innerText)")
        assert [" ".join(r.split()) for r in rows] == [
            "pre_deploy 1/1 web python manage.py migrate --noinput succeeded (exit 0) in 3.2s",
            "post_deploy 1/1 web python manage.py clearsessions failed (exit 1) in 0.9s",
        ]
        assert "Applying shop.0042_order_status... OK" in tab.evaluate("document.getElementById('log').textContent")
        tab.screenshot("deployment-release-steps-desktop")


class TestAuditInBrowser:
    """The audit trail's page in a real browser, as a deployer who logged in with their own token."""

    DAN = DAN_TOKEN

    @pytest.fixture
    def team_live(self, tmp_path: Path, redis: redis_lib.Redis) -> Iterator[LiveServer]:
        yield from serve(make_config(tmp_path, OPERATORS, env=OPERATOR_ENV), redis)

    def test_a_deployer_reads_and_filters_the_trail(self, tab: Tab, team_live: LiveServer,
                                                    store: DeploymentStore) -> None:
        """Deploys, a rollback, a refused request and logins show with who, what, where from and the
        result; the operator filter narrows the list."""
        run(store, push("shop", "5e1f0c2b" * 5), DeploymentState.SUCCEEDED)
        api = f"{team_live.url}/api"
        bearer = {"Authorization": f"Bearer {self.DAN}", "User-Agent": "deploy-script/2.1"}
        admin = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "curl/8.5.0"}
        requests.post(f"{api}/apps/shop/deploy", json={"sha": "9c4d2e7a" * 5}, headers=bearer, timeout=10)
        requests.post(f"{api}/apps/blog/deploy", json={"ref": "v2.4.1"}, headers=admin, timeout=10)
        requests.post(f"{api}/apps/shop/rollback", json={"to": "5e1f0c2b" * 5}, headers=admin, timeout=10)
        requests.post(f"{api}/apps/wiki/deploy", json={}, timeout=10,
                      headers={"Authorization": "Bearer someone-guessing-0000", "User-Agent": "python-requests"})
        tab.resize(DESKTOP)
        tab.goto(f"{team_live.url}/login")
        tab.submit_login(self.DAN)
        tab.goto(f"{team_live.url}/audit")
        rows = tab.evaluate("[...document.querySelectorAll('#audit tbody tr')]"
                            ".map(r => [...r.cells].map(c => c.innerText.trim()))")
        assert [row[1:4] + [row[6]] for row in rows] == [
            ["dan", "login", "—", "ok"],
            ["—", "deploy", "wiki", "refused"],
            ["token-1", "rollback", "shop", "ok"],
            ["token-1", "deploy", "blog", "ok"],
            ["dan", "deploy", "shop", "ok"],
        ]
        assert "deploy-script/2.1" in rows[4][7] and "127.0.0.1" in rows[4][7]
        assert "someone-guessing" not in tab.text()
        tab.screenshot("audit-desktop")
        tab.goto(f"{team_live.url}/audit?operator=token-1")
        assert tab.evaluate("document.querySelectorAll('#audit tbody tr').length") == 2


class TestActionsInBrowser:
    """Deploy, roll back and cancel clicked in a real browser by a deployer, and refused to a viewer and
    to a forged form."""

    @pytest.fixture
    def team_live(self, tmp_path: Path, redis: redis_lib.Redis) -> Iterator[LiveServer]:
        yield from serve(make_config(tmp_path, OPERATORS, env=OPERATOR_ENV), redis)

    @staticmethod
    def click(tab: Tab, selector: str) -> None:
        """Click the element `selector` finds and wait for the page it leads to."""
        tab.evaluate("window.__oldDocument = true")
        tab.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        tab._await_new_document()

    def test_a_deployer_deploys_rolls_back_and_cancels(self, tab: Tab, team_live: LiveServer,
                                                      store: DeploymentStore) -> None:
        """Each action goes through its confirm step and lands on the new deployment's page, queued by dan."""
        old = run(store, push("shop", "5e1f0c2b" * 5), DeploymentState.SUCCEEDED, "rolled 2/2")
        store.set_commit(old, "Show prices with VAT on the cart page", "Alice Example")
        live = run(store, push("shop", "9c4d2e7a" * 5), DeploymentState.SUCCEEDED, "rolled 2/2")
        store.set_commit(live, "Checkout: retry the payment provider once", "Bob Example")
        tab.resize(DESKTOP)
        tab.goto(f"{team_live.url}/")
        tab.submit_login(DAN_TOKEN)
        assert tab.path() == "/"
        tab.screenshot("dashboard-actions-desktop")

        self.click(tab, "#app-shop form.act button.deploy")
        assert tab.path() == "/apps/shop/deploy?sha="
        text = tab.text()
        assert "Deploy shop?" in text and "the head of refs/heads/main" in text and "9c4d2e7a9c4d" in text
        tab.screenshot("confirm-deploy-desktop")
        self.click(tab, "#confirm")
        deployed = store.recent(app="shop", limit=1)[0]
        assert tab.path() == f"/deployments/{deployed.id}"
        assert (deployed.trigger, deployed.operator, deployed.ref) == (Trigger.MANUAL, "dan", "refs/heads/main")
        assert tab.evaluate("document.getElementById('operator').textContent.trim()").startswith("dan")

        tab.goto(f"{team_live.url}/")
        self.click(tab, "#app-shop a.rollback")
        rows = tab.evaluate("[...document.querySelectorAll('#releases tbody tr')].map(r => r.innerText)")
        assert len(rows) == 2 and "live" in rows[0] and "Roll back to this" in rows[1]
        assert "Show prices with VAT on the cart page" in rows[1] and "Alice Example" in rows[1]
        tab.screenshot("rollback-desktop")
        self.click(tab, "#releases a.choose")
        assert "Roll back shop?" in tab.text() and f"#{old}" in tab.text()
        tab.screenshot("confirm-rollback-desktop")
        self.click(tab, "#confirm")
        rollback = store.recent(app="shop", limit=1)[0]
        assert (rollback.trigger, rollback.sha, rollback.operator) == (Trigger.ROLLBACK, "5e1f0c2b" * 5, "dan")
        assert tab.path() == f"/deployments/{rollback.id}"
        # The rollback superseded the deploy queued before it: one queued deployment per app.
        assert store.get(deployed.id).state is DeploymentState.SUPERSEDED
        tab.screenshot("deployment-queued-cancel-desktop")

        self.click(tab, "#cancel")
        assert tab.path() == f"/deployments/{rollback.id}"
        assert store.get(rollback.id).state is DeploymentState.CANCELLED
        assert tab.evaluate("document.getElementById('state').textContent") == "cancelled"
        assert not tab.evaluate("!!document.getElementById('cancel')")

    def test_a_deployer_cancels_a_running_deployment(self, tab: Tab, team_live: LiveServer,
                                                     store: DeploymentStore) -> None:
        """On a running deployment's page the cancel button records dan's request (the page says so, the
        deployment still runs); when its job ends it, the followed page shows `cancelled` and no button."""
        dep_id = store.intake.submit([push("shop", "9c4d2e7a" * 5)]).deployments[0].id
        store.start(dep_id, "")
        tab.goto(f"{team_live.url}/login")
        tab.submit_login(DAN_TOKEN)
        tab.goto(f"{team_live.url}/deployments/{dep_id}")
        self.click(tab, "#cancel")
        assert tab.path() == f"/deployments/{dep_id}"
        assert store.cancel_requester(dep_id) == "dan"
        assert tab.evaluate("document.getElementById('cancel-requested').textContent") == "cancel requested by dan"
        assert not tab.evaluate("!!document.getElementById('cancel')")
        assert tab.evaluate("document.getElementById('state').textContent") == "running"
        store.finish(dep_id, DeploymentState.CANCELLED, "cancelled by dan while building; nothing was live before it")
        tab.wait_for("document.getElementById('state').textContent === 'cancelled'")
        assert not tab.evaluate("!!document.getElementById('cancel-requested') || !!document.getElementById('cancel')")
        assert "cancelled by dan while building" in tab.evaluate("document.getElementById('error').textContent")

    def test_a_forged_form_is_refused(self, tab: Tab, team_live: LiveServer, store: DeploymentStore) -> None:
        """A confirm form whose CSRF token was changed gets a 403 page and queues nothing."""
        tab.goto(f"{team_live.url}/login")
        tab.submit_login(DAN_TOKEN)
        tab.goto(f"{team_live.url}/apps/shop/deploy?sha={'ab' * 20}")
        tab.evaluate("document.querySelector('input[name=csrf_token]').value = 'forged-token-0000'")
        self.click(tab, "#confirm")
        assert "Forbidden" in tab.text() and "missing or wrong CSRF token" in tab.text()
        assert store.recent(limit=10) == []

    def test_a_viewer_gets_no_forms_and_a_403_naming_the_role(
        self, tab: Tab, team_live: LiveServer, store: DeploymentStore
    ) -> None:
        """A viewer's dashboard has no deploy form; opening the confirm page says the deployer role is missing."""
        run(store, push("shop", "5e1f0c2b" * 5), DeploymentState.SUCCEEDED)
        tab.goto(f"{team_live.url}/login")
        tab.submit_login(VERA_TOKEN)
        assert not tab.evaluate("!!document.querySelector('form.act')")
        tab.goto(f"{team_live.url}/apps/shop/rollback")
        assert "rolling back shop needs the deployer role (vera is a viewer)" in tab.text()
        tab.screenshot("action-refused-phone")

    def test_an_admin_locks_redeploys_and_unlocks(self, tab: Tab, team_live: LiveServer,
                                                 store: DeploymentStore) -> None:
        """An admin locks shop with a reason, redeploys it (held by the lock) and unlocks it (queued again)."""
        run(store, push("shop", "9c4d2e7a" * 5), DeploymentState.SUCCEEDED, "rolled 2/2")
        tab.resize(DESKTOP)
        tab.goto(f"{team_live.url}/login")
        tab.submit_login(TOKEN)
        tab.evaluate("document.querySelector('#app-shop input[name=reason]').value = 'database migration'")
        self.click(tab, "#app-shop button.lock")
        assert "locked by token-1: database migration" in tab.evaluate("document.getElementById('app-shop').innerText")
        tab.screenshot("dashboard-locked-desktop")

        self.click(tab, "#app-shop a.redeploy")
        text = tab.text()
        assert "Redeploy shop?" in text and "every service is recreated" in text
        assert "shop is locked by token-1: database migration" in text
        tab.screenshot("confirm-redeploy-desktop")
        self.click(tab, "#confirm")
        redeploy = store.recent(app="shop", limit=1)[0]
        assert (redeploy.trigger, redeploy.state) == (Trigger.REDEPLOY, DeploymentState.HELD)
        assert tab.evaluate("document.getElementById('state').textContent") == "held"

        tab.goto(f"{team_live.url}/")
        self.click(tab, "#app-shop button.unlock")
        assert "locked by" not in tab.evaluate("document.getElementById('app-shop').innerText")
        assert store.get(redeploy.id).state is DeploymentState.QUEUED

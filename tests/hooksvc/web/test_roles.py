"""Operators on the web side: who each request is, what each role may do, sessions bound to an
operator, and the audit trail of what they did and were refused (SPEC §11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from hooksvc import audit
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.sessions import SessionStore, credential_fingerprint
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import DAN_TOKEN, OPERATOR_ENV, OPERATORS, VERA_TOKEN, make_config

TOKENS = {"viewer": VERA_TOKEN, "deployer": DAN_TOKEN, "admin": "operator-token-1"}
NAMES = {"viewer": "vera", "deployer": "dan", "admin": "token-1"}
SHA_A, SHA_B = "a" * 40, "b" * 40
UA = {"User-Agent": "roles-test/1.0"}


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}", **UA}


@pytest.fixture
def team(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    """An app whose config has a viewer (vera), a deployer (dan) and the api_tokens admins."""
    config = make_config(tmp_path, OPERATORS, env=OPERATOR_ENV)
    return create_app(config, connection=redis, listeners=[])


@pytest.fixture
def web(team: Flask) -> FlaskClient:
    return team.test_client()


def succeed(store: DeploymentStore, app: str, sha: str) -> str:
    dep = store.intake.submit([NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, "")
    store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=sha)
    return dep.id


def queued(store: DeploymentStore) -> str:
    return store.intake.submit([NewDeployment("shop", SHA_B, "refs/heads/main", Trigger.PUSH)]).deployments[0].id


# (route, method, body, least role); the "what" half of SPEC §11 adds lock, unlock, redeploy and plan.
ROUTES = [
    ("/api/apps", "GET", None, "viewer"),
    ("/api/deployments", "GET", None, "viewer"),
    ("/api/deployments/{done}", "GET", None, "viewer"),
    ("/api/deployments/{done}/log", "GET", None, "viewer"),
    ("/api/audit", "GET", None, "deployer"),
    ("/api/apps/shop/deploy", "POST", {"sha": SHA_B}, "deployer"),
    ("/api/apps/shop/rollback", "POST", {"to": SHA_A}, "deployer"),
    ("/api/deployments/{queued}/cancel", "POST", None, "deployer"),
]
RANK = {"viewer": 0, "deployer": 1, "admin": 2}


class TestRoleMatrix:
    @pytest.mark.parametrize("role", ["viewer", "deployer", "admin"])
    @pytest.mark.parametrize(("route", "method", "body", "least"), ROUTES)
    def test_each_role_on_each_route(
        self, web: FlaskClient, store: DeploymentStore, redis: redis_lib.Redis,
        role: str, route: str, method: str, body: dict[str, str] | None, least: str,
    ) -> None:
        """A role at or above the route's least role is served; below it, 403 names the missing role,
        nothing changes, and the refusal is audited with the operator's name."""
        done = succeed(store, "shop", SHA_A)
        path = route.format(done=done, queued=queued(store))
        before = [d.to_json() for d in store.recent(limit=50)]
        resp = web.open(path, method=method, json=body, headers=bearer(role))
        if RANK[role] >= RANK[least]:
            assert resp.status_code in (200, 202), resp.get_data(as_text=True)
            return
        assert resp.status_code == 403
        assert resp.json is not None
        assert resp.json["error"].endswith(f"needs the {least} role ({NAMES[role]} is a {role})")
        assert [d.to_json() for d in store.recent(limit=50)] == before
        [entry] = audit.recent(redis)
        assert (entry.operator, entry.result, entry.address, entry.user_agent) == (
            NAMES[role], audit.REFUSED, "127.0.0.1", "roles-test/1.0")

    def test_no_token_and_a_wrong_token_are_401(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """Without a token a deploy is 401 and not audited (it names no one); a wrong token is 401 and
        audited as refused, without the token."""
        assert web.post("/api/apps/shop/deploy", headers=UA).status_code == 401
        assert audit.recent(redis) == []
        wrong = "not-anyones-token-000"
        assert web.post("/api/apps/shop/deploy", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        [entry] = audit.recent(redis)
        assert (entry.action, entry.result, entry.operator, entry.app) == (audit.DEPLOY, audit.REFUSED, None, "shop")
        assert wrong not in str(entry)


class TestAttribution:
    def test_a_deploy_records_its_operator_and_an_audit_entry(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """The deployment says who asked for it, and the trail says who, what, where from and the result."""
        resp = web.post("/api/apps/shop/deploy", json={"sha": SHA_B}, headers=bearer("deployer"))
        assert resp.status_code == 202 and resp.json is not None and resp.json["operator"] == "dan"
        [entry] = audit.recent(redis)
        assert (entry.operator, entry.action, entry.app, entry.sha, entry.deployment, entry.result) == (
            "dan", audit.DEPLOY, "shop", SHA_B, resp.json["id"], audit.OK)
        assert (entry.address, entry.user_agent) == ("127.0.0.1", "roles-test/1.0")

    def test_a_push_has_no_operator(self, web: FlaskClient, store: DeploymentStore) -> None:
        """A deployment a push started has operator null."""
        done = succeed(store, "shop", SHA_A)
        assert web.get(f"/api/deployments/{done}", headers=bearer("viewer")).json == {
            **store.get(done).to_json(), "operator": None}

    def test_rollback_and_cancel_are_audited(self, web: FlaskClient, store: DeploymentStore,
                                             redis: redis_lib.Redis) -> None:
        """A rollback and a cancel each leave an entry; a cancel that fails leaves one with result failed."""
        succeed(store, "shop", SHA_A)
        rolled = web.post("/api/apps/shop/rollback", json={"to": SHA_A}, headers=bearer("admin")).json
        assert rolled is not None and rolled["operator"] == "token-1"
        web.post(f"/api/deployments/{rolled['id']}/cancel", headers=bearer("deployer"))
        refused = web.post(f"/api/deployments/{rolled['id']}/cancel", headers=bearer("deployer"))
        assert refused.status_code == 409
        assert [(e.action, e.operator, e.result, e.deployment) for e in audit.recent(redis)] == [
            (audit.CANCEL, "dan", audit.FAILED, rolled["id"]),
            (audit.CANCEL, "dan", audit.OK, rolled["id"]),
            (audit.ROLLBACK, "token-1", audit.OK, rolled["id"]),
        ]
        assert "only a queued, waiting or running one can be cancelled" in audit.recent(redis)[0].reason

    def test_the_deployment_page_shows_who_triggered_it(self, web: FlaskClient) -> None:
        """The page of a manual deploy names its operator."""
        dep = web.post("/api/apps/shop/deploy", json={"sha": SHA_B}, headers=bearer("deployer")).json
        assert dep is not None
        page = web.get(f"/deployments/{dep['id']}", headers=bearer("viewer")).get_data(as_text=True)
        assert '<dd id="operator">dan</dd>' in page


class TestAuditRoute:
    def test_filters_and_limit(self, web: FlaskClient) -> None:
        """GET /api/audit filters by app and operator and honours limit; a bad limit or app is 400/404."""
        web.post("/api/apps/shop/deploy", json={"sha": SHA_B}, headers=bearer("deployer"))
        web.post("/api/apps/blog/deploy", json={"ref": "v1"}, headers=bearer("admin"))
        entries = web.get("/api/audit", headers=bearer("deployer")).json
        assert entries is not None and [e["app"] for e in entries["entries"]] == ["blog", "shop"]
        assert set(entries["entries"][0]) == {"id", "at", "operator", "action", "app", "sha", "deployment",
                                              "address", "user_agent", "result", "reason"}
        one = web.get("/api/audit?operator=dan", headers=bearer("admin")).json
        assert one is not None and [e["app"] for e in one["entries"]] == ["shop"]
        assert len(web.get("/api/audit?limit=1", headers=bearer("admin")).json["entries"]) == 1  # type: ignore[index]
        blog = web.get("/api/audit?app=blog", headers=bearer("admin")).json
        assert blog is not None and blog["entries"][0]["operator"] == "token-1"
        assert web.get("/api/audit?limit=0", headers=bearer("admin")).status_code == 400
        assert web.get("/api/audit?app=nope", headers=bearer("admin")).status_code == 404


def login(client: FlaskClient, token: str) -> int:
    return client.post("/login", data={"token": token, "next": "/"}, headers=UA).status_code


class TestSessions:
    def test_a_login_is_bound_to_its_operator(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """Logging in with dan's token makes the pages dan's (and audits the login); the header names him."""
        assert login(web, TOKENS["deployer"]) == 302
        page = web.get("/").get_data(as_text=True)
        assert 'id="operator">dan <span class="muted">(deployer)' in page
        assert web.get("/audit").status_code == 200
        [entry] = audit.recent(redis)
        assert (entry.action, entry.operator, entry.result, entry.user_agent) == (
            audit.LOGIN, "dan", audit.OK, "roles-test/1.0")

    def test_a_failed_login_is_audited_without_the_token(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """A wrong token at the form is a failed login entry holding neither the token nor a name."""
        assert login(web, "guess-guess-guess-1") == 401
        [entry] = audit.recent(redis)
        assert (entry.action, entry.operator, entry.result) == (audit.LOGIN, None, audit.FAILED)
        assert "guess-guess-guess-1" not in repr(entry)

    def test_a_viewer_session_reads_but_may_not_open_the_audit_page(self, web: FlaskClient) -> None:
        """A viewer's session opens the dashboard, not /audit (403 naming the deployer role)."""
        login(web, TOKENS["viewer"])
        assert web.get("/").status_code == 200
        resp = web.get("/audit")
        assert resp.status_code == 403 and "needs the deployer role" in resp.get_data(as_text=True)

    def test_a_logged_out_session_is_not_replayed(self, web: FlaskClient, team: Flask) -> None:
        """After logout the old cookie, sent again from another browser, opens nothing."""
        login(web, TOKENS["deployer"])
        cookie = web.get_cookie("hooksvc_session")
        assert cookie is not None
        web.post("/logout")
        replay = team.test_client()
        replay.set_cookie("hooksvc_session", cookie.value)
        assert replay.get("/").status_code == 302

    def test_a_tampered_session_id_opens_nothing(self, web: FlaskClient, team: Flask) -> None:
        """A cookie with one character of a live id changed opens nothing."""
        login(web, TOKENS["deployer"])
        cookie = web.get_cookie("hooksvc_session")
        assert cookie is not None
        tampered = cookie.value[:-1] + ("A" if cookie.value[-1] != "A" else "B")
        forger = team.test_client()
        forger.set_cookie("hooksvc_session", tampered)
        assert forger.get("/").status_code == 302

    def test_a_forged_record_claiming_another_operator_opens_nothing(
        self, team: Flask, redis: redis_lib.Redis,
    ) -> None:
        """A session record naming an admin but opened with a viewer's token is refused: the token decides."""
        session_id = SessionStore(redis, 60).create(
            credential=credential_fingerprint(TOKENS["viewer"]), address="127.0.0.1", operator="token-1")
        client = team.test_client()
        client.set_cookie("hooksvc_session", session_id)
        assert client.get("/").status_code == 302


class TestAuditPage:
    def test_lists_and_filters_entries(self, web: FlaskClient) -> None:
        """/audit lists entries newest first and filters by app and operator."""
        web.post("/api/apps/shop/deploy", json={"sha": SHA_B}, headers=bearer("deployer"))
        web.post("/api/apps/blog/deploy", json={"ref": "v1"}, headers=bearer("admin"))
        page = web.get("/audit", headers=bearer("admin")).get_data(as_text=True)
        assert page.count('<tr class="entry">') == 2 and page.index("blog") < page.index(SHA_B[:12])
        only_dan = web.get("/audit?operator=dan", headers=bearer("admin")).get_data(as_text=True)
        assert only_dan.count('<tr class="entry">') == 1 and SHA_B[:12] in only_dan
        none = web.get("/audit?app=wiki", headers=bearer("admin")).get_data(as_text=True)
        assert 'id="audit-empty"' in none

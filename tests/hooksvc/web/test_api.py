"""The operator API (docs/contract.md, HTTP interface) through Flask's test client, against a real Redis."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc import defaults
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from hooksvc.web.context import EXTENSION, WebContext
from tests.helpers.config import make_config

AUTH = {"Authorization": "Bearer operator-token-1"}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"operator:operator-token-1").decode()}
SHA_A, SHA_B = "a" * 40, "b" * 40


def succeed(store: DeploymentStore, app: str, sha: str) -> str:
    dep = store.intake.submit([NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, "")
    store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=sha)
    return dep.id


class TestAuthentication:
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!"}])
    def test_missing_or_bad_token_is_401_json(self, client: FlaskClient, headers: dict[str, str]) -> None:
        """Without a valid bearer token every API route answers 401 with a JSON error."""
        resp = client.get("/api/apps", headers=headers)
        assert resp.status_code == 401
        assert resp.json == {"error": "signature or token rejected"}

    def test_every_configured_token_works(self, client: FlaskClient) -> None:
        """Each token of the comma-separated list is accepted."""
        for token in ("operator-token-1", "operator-token-2"):
            assert client.get("/api/apps", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    def test_public_read_opens_reads_but_not_writes(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """With public_read, GETs need no token but deploys still do."""
        client = create_app(make_config(tmp_path, public_read="true"), connection=redis, listeners=[]).test_client()
        assert client.get("/api/apps").status_code == 200
        assert client.post("/api/apps/shop/deploy").status_code == 401

    def test_healthz_needs_no_token(self, client: FlaskClient) -> None:
        """/healthz answers 200 without a token while Redis answers."""
        resp = client.get("/healthz")
        assert resp.status_code == 200 and resp.json["ok"] is True


class TestCrossSiteRequests:
    """Basic auth and the pages' session cookie, which a browser adds by itself, open no API route."""

    @pytest.mark.parametrize("path", ["/api/apps/shop/deploy", "/api/apps/shop/rollback", "/api/deployments/1/cancel"])
    def test_basic_auth_cannot_change_state(self, client: FlaskClient, store: DeploymentStore, path: str) -> None:
        """A POST with the token as basic-auth password (and an empty form body) is refused with 401."""
        queued = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        resp = client.post(path, headers=BASIC, content_type="application/x-www-form-urlencoded")
        assert resp.status_code == 401 and resp.json == {"error": "signature or token rejected"}
        assert [d.id for d in store.recent()] == [queued] and store.get(queued).state == "queued"

    def test_session_cookie_cannot_change_state(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A browser logged in to the pages with the form still gets 401 for a POST to the API."""
        assert client.post("/login", data={"token": "operator-token-1"}).status_code == 302
        assert client.get("/").status_code == 200  # the cookie opens the pages
        for path in ("/api/apps/shop/deploy", "/api/apps/shop/rollback", "/api/deployments/1/cancel"):
            assert client.post(path).status_code == 401
            assert client.post(path, json={}).status_code == 401
        assert store.recent() == []

    def test_basic_auth_opens_no_api_read_either(self, client: FlaskClient) -> None:
        """The API takes a bearer token only; basic auth is for the pages."""
        assert client.get("/api/apps", headers=BASIC).status_code == 401
        assert client.get("/", headers=BASIC).status_code == 200

    @pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
    def test_bearer_with_a_body_that_is_not_json_is_400(
            self, client: FlaskClient, store: DeploymentStore, content_type: str) -> None:
        """A state-changing request's body must be JSON, even with the right bearer token."""
        for path in ("/api/apps/shop/deploy", "/api/apps/shop/rollback", "/api/deployments/1/cancel"):
            resp = client.post(path, headers=AUTH, data=f"sha={SHA_A}", content_type=content_type)
            assert resp.status_code == 400 and "must be JSON" in resp.json["error"]
        assert store.recent() == []

    def test_bearer_with_json_or_no_body_is_accepted(self, client: FlaskClient) -> None:
        """A bearer token with a JSON body, or with no body at all, deploys."""
        assert client.post("/api/apps/shop/deploy", headers=AUTH, json={"sha": SHA_A}).status_code == 202
        assert client.post("/api/apps/shop/deploy", headers=AUTH).status_code == 202


class TestDeploymentIds:
    @pytest.mark.parametrize("deployment_id", ["next", "1:log", "0x1", "%C2%B2", "1%0a"])
    def test_a_name_that_is_not_an_id_is_404(
            self, client: FlaskClient, store: DeploymentStore, deployment_id: str) -> None:
        """Ids are numbers: other names under the deployment prefix (the id counter, a log) are 404, never 500."""
        dep_id = succeed(store, "shop", SHA_A)
        assert dep_id == "1"
        for method, path in (("GET", f"/api/deployments/{deployment_id}"),
                             ("GET", f"/api/deployments/{deployment_id}/log"),
                             ("POST", f"/api/deployments/{deployment_id}/cancel")):
            resp = client.open(path, method=method, headers=AUTH)
            assert resp.status_code == 404 and "no deployment" in resp.json["error"], path


class TestDeploy:
    def test_manual_deploy_of_the_branch_head(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A deploy without sha queues the head of the configured branch for the worker to resolve."""
        resp = client.post("/api/apps/shop/deploy", headers=AUTH)
        assert resp.status_code == 202
        body = resp.json
        assert body["state"] == "queued" and body["trigger"] == "manual" and body["ref"] == "refs/heads/main"
        assert store.get(body["id"]).forced

    def test_manual_deploy_of_a_sha(self, client: FlaskClient) -> None:
        """A deploy may name an exact sha."""
        resp = client.post("/api/apps/shop/deploy", headers=AUTH, json={"sha": SHA_A})
        assert resp.status_code == 202 and resp.json["sha"] == SHA_A

    @pytest.mark.parametrize("body", [{"sha": "not-hex"}, {"ref": "../etc"}, {"sha": 42},
                                      {"sha": SHA_A + "\n"}, {"ref": "main\n"}])
    def test_bad_body_is_400(self, client: FlaskClient, body: dict[str, object]) -> None:
        """An invalid sha or ref is refused with a reason."""
        resp = client.post("/api/apps/shop/deploy", headers=AUTH, json=body)
        assert resp.status_code == 400 and "is not a valid" in resp.json["error"]

    def test_non_object_body_is_400(self, client: FlaskClient) -> None:
        """A body that is not a JSON object is refused."""
        resp = client.post("/api/apps/shop/deploy", headers=AUTH, data="[1]", content_type="application/json")
        assert resp.status_code == 400

    def test_tag_app_needs_a_ref(self, client: FlaskClient) -> None:
        """An app deploying tags has no 'head': the request must name a tag or sha."""
        resp = client.post("/api/apps/blog/deploy", headers=AUTH)
        assert resp.status_code == 400 and "give a 'ref' or a 'sha'" in resp.json["error"]

    def test_unknown_app_is_404(self, client: FlaskClient) -> None:
        """Deploying an app that is not configured answers 404."""
        resp = client.post("/api/apps/nope/deploy", headers=AUTH)
        assert resp.status_code == 404 and resp.json == {"error": "no app 'nope'"}


class TestRollback:
    def test_rollback_redeploys_the_previous_successful_release(self, client: FlaskClient,
                                                                 store: DeploymentStore) -> None:
        """Rollback queues the last succeeded sha before the live one."""
        succeed(store, "shop", SHA_A)
        succeed(store, "shop", SHA_B)
        resp = client.post("/api/apps/shop/rollback", headers=AUTH)
        assert resp.status_code == 202
        assert resp.json["sha"] == SHA_A and resp.json["trigger"] == "rollback"

    def test_rollback_without_history_is_409(self, client: FlaskClient) -> None:
        """With nothing to roll back to, the answer says so."""
        resp = client.post("/api/apps/shop/rollback", headers=AUTH)
        assert resp.status_code == 409 and "no earlier successful release" in resp.json["error"]

    def test_rollback_to_a_sha(self, client: FlaskClient) -> None:
        """`to` picks the release explicitly."""
        resp = client.post("/api/apps/shop/rollback", headers=AUTH, json={"to": SHA_B})
        assert resp.status_code == 202 and resp.json["sha"] == SHA_B


class TestDeploymentsAndApps:
    def test_cancel_a_queued_deployment(self, client: FlaskClient) -> None:
        """A queued deployment can be cancelled; cancelling again is a 409 conflict."""
        dep_id = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        resp = client.post(f"/api/deployments/{dep_id}/cancel", headers=AUTH)
        assert resp.status_code == 200 and resp.json["state"] == "cancelled"
        assert client.post(f"/api/deployments/{dep_id}/cancel", headers=AUTH).status_code == 409
        assert client.post("/api/deployments/12345/cancel", headers=AUTH).status_code == 404

    def test_cancel_of_a_running_deployment_is_accepted_not_done(self, client: FlaskClient,
                                                                 store: DeploymentStore) -> None:
        """Cancelling a running deployment answers 202 with it still running and `cancel_requested_by`, and its
        log says who asked; the job ends it (tests/hooksvc/runtime/test_cancel_running.py)."""
        dep_id = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        store.start(dep_id, "")
        resp = client.post(f"/api/deployments/{dep_id}/cancel", headers=AUTH)
        assert resp.status_code == 202, resp.json
        assert (resp.json["state"], resp.json["cancel_requested_by"]) == ("running", "token-1")
        assert client.get(f"/api/deployments/{dep_id}", headers=AUTH).json["cancel_requested_by"] == "token-1"
        assert "cancel requested by token-1" in store.logs.read(dep_id)[0]

    def test_list_filters_and_validation(self, client: FlaskClient, store: DeploymentStore) -> None:
        """Deployments list newest first, filter by app and state, and refuse bad filters."""
        first = succeed(store, "shop", SHA_A)
        second = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        ids = [d["id"] for d in client.get("/api/deployments?app=shop", headers=AUTH).json["deployments"]]
        assert ids == [second, first]
        ok = client.get("/api/deployments?state=succeeded&limit=5", headers=AUTH).json["deployments"]
        assert [d["id"] for d in ok] == [first]
        assert client.get("/api/deployments?state=nope", headers=AUTH).status_code == 400
        assert client.get("/api/deployments?limit=0", headers=AUTH).status_code == 400
        assert client.get("/api/deployments?app=nope", headers=AUTH).status_code == 404

    def test_get_one_deployment_has_every_record_field(self, client: FlaskClient, store: DeploymentStore) -> None:
        """One deployment's JSON carries every field of its record (docs/contract.md, Deployments)."""
        dep_id = succeed(store, "shop", SHA_A)
        body = client.get(f"/api/deployments/{dep_id}", headers=AUTH).json
        for key in ("id", "app", "sha", "ref", "trigger", "delivery_id", "state", "created_at", "started_at",
                    "finished_at", "previous_sha", "error"):
            assert key in body
        assert body["state"] == "succeeded" and body["finished_at"].endswith("Z")
        assert client.get("/api/deployments/999", headers=AUTH).status_code == 404

    def test_apps_show_live_sha_and_last_deployment(self, client: FlaskClient, store: DeploymentStore) -> None:
        """GET /api/apps lists every app with its live sha and state."""
        succeed(store, "shop", SHA_A)
        apps = {a["name"]: a for a in client.get("/api/apps", headers=AUTH).json["apps"]}
        assert set(apps) == {"shop", "blog", "wiki"}
        assert apps["shop"]["live_sha"] == SHA_A and apps["shop"]["state"] == "succeeded"
        assert apps["blog"]["live_sha"] is None

    def test_log_plain_and_followed(self, client: FlaskClient, store: DeploymentStore) -> None:
        """The log is plain text; with follow=1 it streams until the deployment is final."""
        dep_id = succeed(store, "shop", SHA_A)
        store.logs.append(dep_id, "extra line")
        resp = client.get(f"/api/deployments/{dep_id}/log", headers=AUTH)
        assert resp.mimetype == "text/plain" and "finished: succeeded" in resp.text
        followed = client.get(f"/api/deployments/{dep_id}/log?follow=1", headers=AUTH)
        assert followed.text.splitlines()[-1] == "extra line"

    def test_followed_log_of_an_unfinished_deployment_ends_at_its_time_limit(
        self, client: FlaskClient, store: DeploymentStore, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A followed log stops after STREAM_MAX_SECONDS with a last line telling the reader to ask again,
        and gives its stream slot back."""
        monkeypatch.setattr(defaults, "STREAM_MAX_SECONDS", 0.5)
        dep_id = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        followed = client.get(f"/api/deployments/{dep_id}/log?follow=1", headers=AUTH)
        last = followed.text.splitlines()[-1]
        assert last.startswith("[hooksvc stopped following after ") and "request the log again" in last
        followed.close()
        assert context_of(client).stream_slots.in_use == 0

    def test_followers_beyond_the_slots_get_503_with_retry_after(
        self, tmp_path: Path, redis: redis_lib.Redis, store: DeploymentStore,
    ) -> None:
        """With every stream slot taken, the next followed log is a JSON 503 with Retry-After, at once."""
        app = create_app(make_config(tmp_path), connection=redis, listeners=[], threads=2)
        client = app.test_client()
        dep_id = client.post("/api/apps/shop/deploy", headers=AUTH).json["id"]
        release = context_of(client).stream_slots.acquire("10.0.0.9", limit_client=False)  # the one slot
        try:
            refused = client.get(f"/api/deployments/{dep_id}/log?follow=1", headers=AUTH)
        finally:
            release()
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == str(defaults.STREAM_RETRY_AFTER_SECONDS)
        assert "retry later" in refused.json["error"]
        assert context_of(client).stream_slots.in_use == 0


def context_of(client: FlaskClient) -> WebContext:
    context: WebContext = client.application.extensions[EXTENSION]
    return context

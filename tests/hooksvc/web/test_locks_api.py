"""The lock, unlock, redeploy and freeze-override API, the app overview's lock and window, the
dashboard, and the audit entries each action leaves (real Redis, the web app in-process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc import audit
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import open_store
from hooksvc.web import create_app
from tests.helpers.config import frozen_app, make_config

BEARER = {"Authorization": "Bearer operator-token-2"}
SHA_A = "a" * 40


@pytest.fixture
def client(tmp_path: Path, redis: redis_lib.Redis) -> FlaskClient:
    """The web app for `make_config`'s apps plus `cafe`, frozen today and tomorrow (UTC)."""
    today = datetime.now(UTC).date()
    window = f'"{today} - {today + timedelta(days=1)}"'
    config = make_config(tmp_path, extra=frozen_app(tmp_path, window, timezone="UTC"))
    return create_app(config, connection=redis).test_client()


def test_lock_answers_the_apps_lock_state_and_audits_who(client: FlaskClient, redis: redis_lib.Redis) -> None:
    """POST lock is 200 with who locked, why and when; /api/apps and the dashboard show it; it is audited."""
    resp = client.post("/api/apps/shop/lock", json={"reason": "database  migration"}, headers=BEARER)
    assert resp.status_code == 200, resp.json
    assert resp.json["app"] == "shop" and resp.json["locked"] is True
    assert (resp.json["lock"]["by"], resp.json["lock"]["reason"]) == ("token-2", "database migration")
    [shop] = [a for a in client.get("/api/apps", headers=BEARER).json["apps"] if a["name"] == "shop"]
    assert shop["lock"]["reason"] == "database migration"
    page = client.get("/", headers=BEARER).get_data(as_text=True)
    assert "by token-2: database migration" in page
    [entry] = audit.recent(redis, app="shop")
    assert (entry.action, entry.result, entry.operator, entry.reason) == ("lock", "ok", "token-2", "database migration")


def test_unlock_releases_the_held_deployment(client: FlaskClient, redis: redis_lib.Redis) -> None:
    """A push while locked is held; POST unlock answers unlocked with the deployment now queued."""
    client.post("/api/apps/shop/lock", json={"reason": "hold on"}, headers=BEARER)
    held = client.post("/api/apps/shop/deploy", json={"sha": SHA_A}, headers=BEARER)
    assert held.status_code == 202 and held.json["state"] == "held"
    assert held.json["error"] == "deploys to shop are locked by token-2: hold on"
    resp = client.post("/api/apps/shop/unlock", headers=BEARER)
    assert resp.status_code == 200, resp.json
    assert resp.json["locked"] is False and resp.json["lock"] is None
    assert resp.json["deployment"]["id"] == held.json["id"] and resp.json["deployment"]["state"] == "queued"
    assert [e.action for e in audit.recent(redis, app="shop")] == ["unlock", "deploy", "lock"]


@pytest.mark.parametrize(("body", "message"), [
    ({}, 'the body must name the lock\'s "reason"'),
    ({"reason": " "}, "a lock needs a 'reason'"),
])
def test_lock_without_a_reason_is_refused(client: FlaskClient, redis: redis_lib.Redis, body: dict[str, str],
                                          message: str) -> None:
    """A lock with no reason is 400 naming the key, and the app stays unlocked."""
    resp = client.post("/api/apps/shop/lock", json=body, headers=BEARER)
    assert resp.status_code == 400 and message in resp.json["error"]
    assert client.get("/api/apps", headers=BEARER).json["apps"][0]["lock"] is None


def test_actions_need_a_token_and_a_known_app(client: FlaskClient) -> None:
    """Without a token lock is 401; an unknown app is 404; nothing is locked."""
    assert client.post("/api/apps/shop/lock", json={"reason": "x"}).status_code == 401
    assert client.post("/api/apps/nope/lock", json={"reason": "x"}, headers=BEARER).status_code == 404
    assert client.post("/api/apps/nope/unlock", headers=BEARER).status_code == 404
    assert client.post("/api/apps/shop/redeploy").status_code == 401
    assert client.get("/api/apps/shop/plan").status_code == 401


def test_plan_is_never_for_anonymous_readers(tmp_path: Path, redis: redis_lib.Redis) -> None:
    """Under `public_read` a plan still needs a token: it makes a worker fetch and run compose."""
    public = create_app(make_config(tmp_path, public_read="true"), connection=redis).test_client()
    assert public.get("/api/apps").status_code == 200
    resp = public.get("/api/apps/shop/plan")
    assert resp.status_code == 401


def test_frozen_app_holds_a_manual_deploy_unless_an_admin_overrides(client: FlaskClient,
                                                                     redis: redis_lib.Redis) -> None:
    """In a window a manual deploy is held naming the window; `override_freeze` needs a reason, then
    queues, and is audited."""
    held = client.post("/api/apps/cafe/deploy", json={"sha": SHA_A}, headers=BEARER)
    assert held.json["state"] == "held" and "deploys to cafe are frozen until" in held.json["error"]
    [cafe] = [a for a in client.get("/api/apps", headers=BEARER).json["apps"] if a["name"] == "cafe"]
    assert cafe["freeze"]["active"]["until"].endswith("Z") and cafe["freeze"]["timezone"] == "UTC"
    refused = client.post("/api/apps/cafe/deploy", json={"sha": SHA_A, "override_freeze": True}, headers=BEARER)
    assert refused.status_code == 400 and "'override_freeze' needs a 'reason'" in refused.json["error"]
    through = client.post("/api/apps/cafe/deploy", json={"sha": SHA_A, "override_freeze": True,
                                                         "reason": "hotfix for the checkout"}, headers=BEARER)
    assert through.status_code == 202 and through.json["state"] == "queued"
    entry, override = audit.recent(redis, app="cafe")[:2]
    assert (override.action, override.reason) == ("override-freeze", "hotfix for the checkout")
    assert (entry.action, entry.deployment) == ("deploy", through.json["id"])


def test_redeploy_needs_a_live_release(client: FlaskClient, redis: redis_lib.Redis, tmp_path: Path) -> None:
    """Redeploy is 409 before anything is live, then 202 with the live sha and trigger redeploy."""
    assert client.post("/api/apps/shop/redeploy", headers=BEARER).status_code == 409
    store = open_store(make_config(tmp_path), redis)
    dep = store.intake.submit([NewDeployment("shop", SHA_A, "refs/heads/main", Trigger.PUSH)]).deployments[0]
    store.start(dep.id, "")
    store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=SHA_A)
    resp = client.post("/api/apps/shop/redeploy", headers=BEARER)
    assert resp.status_code == 202, resp.json
    assert (resp.json["trigger"], resp.json["sha"], resp.json["state"]) == ("redeploy", SHA_A, "queued")
    assert audit.recent(redis, app="shop")[0].action == "redeploy"

"""Pull-request webhooks of the three hosts queue previews, and the previews API lists and removes them
(SPEC §13), through Flask's test client and real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from hooksvc import audit, keys
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.outbox import status_lane, write_events
from hooksvc.preview_records import LIVE, PreviewRecord, PreviewRecords, sweep_expired
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import DAN_TOKEN, OPERATOR_ENV, OPERATORS, VERA_TOKEN, make_config
from tests.helpers.payloads import (
    commit_sha,
    gitea_pull_request,
    gitea_request,
    github_pull_request,
    github_push,
    github_request,
    gitlab_merge_request,
    gitlab_request,
)
from tests.hooksvc.web.test_actions import csrf_of, logged_in

SHOP, BLOG, WIKI = "shop-webhook-secret", "blog-webhook-secret", "wiki-webhook-secret"
AUTH = {"Authorization": "Bearer operator-token-1"}
PREVIEWS = """
    [apps.shop.previews]
    url = "http://127.0.0.1:{port}/"
    ports = "9100-9199"
    ttl = "1h"

    [apps.blog.previews]
    url = "https://pr-{number}.blog.example.com"
    labels = { "traefik.http.routers.pr{number}.rule" = "Host(`pr-{number}.blog.example.com`)" }
    allow_forks = true

    [apps.wiki.previews]
    url = "https://mr-{number}.wiki.example.com"
    labels = { "caddy" = "mr-{number}.wiki.example.com" }
"""


@pytest.fixture
def previews_app(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    """The web app of `make_config`'s apps with previews, its deployments writing outbox events."""
    config = make_config(tmp_path, PREVIEWS + OPERATORS, env=OPERATOR_ENV)
    return create_app(config, connection=redis, listeners=[write_events])


@pytest.fixture
def web(previews_app: Flask) -> FlaskClient:
    return previews_app.test_client()


def github_pr(web: FlaskClient, action: str, number: int, sha: str | None = None, **kw: object) -> dict[str, object]:
    hook = github_request(github_pull_request(action, number, sha, **kw), SHOP, event="pull_request")  # type: ignore[arg-type]
    resp = web.open("/hooks/github", **hook.client_kwargs())
    assert resp.status_code in (200, 202), resp.get_data(as_text=True)
    answer: dict[str, object] = resp.json
    return answer


def deployment(store: DeploymentStore, answer: dict[str, object]) -> Deployment:
    summaries = answer["deployments"]
    assert isinstance(summaries, list) and len(summaries) == 1
    return store.get(summaries[0]["id"])


class TestIntake:
    def test_github_pushes_to_a_pr_queue_its_preview_in_its_own_slot(self, web: FlaskClient, store: DeploymentStore,
                                                                     redis: redis_lib.Redis) -> None:
        """A synchronize queues the PR head for refs/pull/N/head in the PR's own queued slot: production's
        queued deployment is not superseded, and neither is another PR's."""
        production = store.intake.submit([NewDeployment("shop", commit_sha(1), "refs/heads/main",
                                                        Trigger.PUSH)]).deployments[0]
        first = deployment(store, github_pr(web, "opened", 7, commit_sha(70)))
        other = deployment(store, github_pr(web, "opened", 8, commit_sha(80)))
        assert (first.preview, first.ref, first.sha, first.trigger) == (7, "refs/pull/7/head", commit_sha(70),
                                                                       Trigger.PUSH)
        assert first.to_json()["preview"] == 7
        newer = deployment(store, github_pr(web, "synchronize", 7, commit_sha(71)))
        assert store.get(first.id).state is DeploymentState.SUPERSEDED
        assert store.get(other.id).state is DeploymentState.QUEUED
        assert store.get(production.id).state is DeploymentState.QUEUED
        assert store.queued_id("shop") == production.id and store.queued_id("shop", 7) == newer.id
        assert set(store.queued_ids("shop")) == {production.id, newer.id, other.id}

    def test_a_locked_app_does_not_hold_previews(self, web: FlaskClient, store: DeploymentStore) -> None:
        """An operator's lock holds production's deployments only: a preview is queued all the same."""
        web.post("/api/apps/shop/lock", json={"reason": "migration"}, headers=AUTH)
        dep = deployment(store, github_pr(web, "opened", 3))
        assert dep.state is DeploymentState.QUEUED

    def test_closed_queues_a_teardown(self, web: FlaskClient, store: DeploymentStore) -> None:
        """A closed PR (merged or not) queues a teardown of its preview, superseding a queued deploy."""
        queued = deployment(store, github_pr(web, "synchronize", 4))
        teardown = deployment(store, github_pr(web, "closed", 4, merged=True))
        assert (teardown.trigger, teardown.preview) == (Trigger.TEARDOWN, 4)
        assert store.get(queued.id).state is DeploymentState.SUPERSEDED

    def test_other_actions_and_apps_without_previews_are_ignored(self, web: FlaskClient, tmp_path: Path,
                                                                redis: redis_lib.Redis) -> None:
        """A label change leaves the preview alone; an app without previews ignores pull requests."""
        assert "stays as it is" in str(github_pr(web, "labeled", 5)["ignored"])
        plain = create_app(make_config(tmp_path), connection=redis, listeners=[]).test_client()
        assert "no app of repository" in str(github_pr(plain, "opened", 5)["ignored"])

    def test_fork_is_refused_with_a_failure_status(self, web: FlaskClient, store: DeploymentStore,
                                                   redis: redis_lib.Redis) -> None:
        """A fork's PR is answered `ignored` naming the fork, recorded failed, and its commit gets a
        failure status saying previews are not built for forks."""
        answer = github_pr(web, "opened", 9, commit_sha(90), fork="mallory/shop")
        assert "fork" in str(answer["ignored"])
        refused = store.recent(app="shop")[0]
        assert (refused.preview, refused.state) == (9, DeploymentState.FAILED)
        assert "not built for pull requests from forks" in refused.error
        lane = keys.outbox_lane(status_lane("shop", commit_sha(90), 9))  # a preview's statuses have their own lane
        statuses = [json.loads(e) for e in redis.lrange(lane, 0, -1)]
        assert statuses[-1]["state"] == "failed" and "forks" in statuses[-1]["error"]
        assert store.queued_id("shop", 9) is None

    def test_one_app_allows_a_fork_another_refuses_it(self, tmp_path: Path, redis: redis_lib.Redis,
                                                       store: DeploymentStore) -> None:
        """Two apps of one repository: the one allowing forks queues the fork's preview, the other records
        it failed; the answer (202) lists both as they are."""
        extra = PREVIEWS + """
            [apps.shop-forks]
            host = "github"
            repo = "acme/shop"
            clone_url = "/srv/git/shop.git"
            secret_env = "SHOP_SECRET"

            [apps.shop-forks.previews]
            url = "https://pr-{number}.forks.example.com"
            labels = { "pr" = "{number}" }
            allow_forks = true
        """
        web = create_app(make_config(tmp_path, extra), connection=redis, listeners=[]).test_client()
        answer = github_pr(web, "opened", 6, fork="mallory/shop")
        assert {(d["app"], d["state"]) for d in answer["deployments"]} == {("shop-forks", "queued"),  # type: ignore[union-attr]
                                                                           ("shop", "failed")}

    def test_gitea_synchronized_and_allowed_fork(self, web: FlaskClient, store: DeploymentStore) -> None:
        """Gitea's `synchronized` queues the head; an app with allow_forks takes a fork's PR, marked as one."""
        hook = gitea_request(gitea_pull_request("synchronized", 12, commit_sha(120), fork="mallory/blog"), BLOG,
                             event="pull_request")
        dep = deployment(store, web.open("/hooks/gitea", **hook.client_kwargs()).json)
        assert (dep.app, dep.preview, dep.ref, dep.fork) == ("blog", 12, "refs/pull/12/head", True)

    def test_gitlab_update_with_new_commits_and_merge(self, web: FlaskClient, store: DeploymentStore) -> None:
        """GitLab: an update with `oldrev` deploys refs/merge-requests/N/head, one without is ignored, a
        merge tears down."""
        send = lambda payload: web.open("/hooks/gitlab", **gitlab_request(payload, WIKI).client_kwargs()).json  # noqa: E731
        dep = deployment(store, send(gitlab_merge_request("update", 3, commit_sha(33), oldrev=commit_sha(32))))
        assert (dep.app, dep.preview, dep.ref) == ("wiki", 3, "refs/merge-requests/3/head")
        assert "stays as it is" in send(gitlab_merge_request("update", 3))["ignored"]
        assert deployment(store, send(gitlab_merge_request("merge", 3))).trigger is Trigger.TEARDOWN

    def test_signature_is_checked_as_for_pushes(self, web: FlaskClient) -> None:
        """A pull-request delivery signed with the wrong secret is refused like a push."""
        hook = github_request(github_pull_request("opened", 1), "not-the-secret", event="pull_request")
        assert web.open("/hooks/github", **hook.client_kwargs()).status_code == 401

    def test_a_push_still_deploys_production(self, web: FlaskClient, store: DeploymentStore) -> None:
        """Pushes are untouched by previews: a push to main is the app's own deployment."""
        hook = github_request(github_push(), SHOP)
        dep = deployment(store, web.open("/hooks/github", **hook.client_kwargs()).json)
        assert dep.preview is None and dep.to_json()["preview"] is None


class TestApi:
    def live(self, redis: redis_lib.Redis, number: int, updated_at: float = 1000.0) -> PreviewRecord:
        record = PreviewRecord(app="shop", number=number, sha=commit_sha(number), url=f"http://127.0.0.1:91{number:02}/",
                               state=LIVE, updated_at=updated_at, deployment_id="1", port=9100 + number)
        PreviewRecords(redis).put(record)
        return record

    def test_list_shows_each_preview(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """GET lists number, url, sha, state and updated_at of each preview, by number."""
        self.live(redis, 5)
        self.live(redis, 2)
        previews = web.get("/api/apps/shop/previews", headers=AUTH).json["previews"]
        assert [p["number"] for p in previews] == [2, 5]
        assert previews[0] == {"number": 2, "url": "http://127.0.0.1:9102/", "sha": commit_sha(2), "state": "live",
                               "updated_at": "1970-01-01T00:16:40.000Z", "deployment_id": "1"}

    def test_delete_queues_an_audited_teardown(self, web: FlaskClient, store: DeploymentStore,
                                               redis: redis_lib.Redis) -> None:
        """DELETE queues a teardown of the preview (202), audited with the operator; an unknown one is 404."""
        self.live(redis, 5)
        resp = web.delete("/api/apps/shop/previews/5", headers={"Authorization": f"Bearer {DAN_TOKEN}"})
        assert resp.status_code == 202
        dep = store.get(resp.json["id"])
        assert (dep.trigger, dep.preview, dep.sha, dep.operator) == (Trigger.TEARDOWN, 5, commit_sha(5), "dan")
        entry = audit.recent(redis, app="shop", limit=1)[0]
        assert (entry.action, entry.result, entry.operator) == (audit.REMOVE_PREVIEW, audit.OK, "dan")
        assert web.delete("/api/apps/shop/previews/6", headers=AUTH).status_code == 404

    def test_viewers_may_list_but_not_remove(self, web: FlaskClient, redis: redis_lib.Redis) -> None:
        """Removing a preview needs the deployer role; a viewer gets 403 and nothing is queued."""
        self.live(redis, 5)
        viewer = {"Authorization": f"Bearer {VERA_TOKEN}"}
        assert web.get("/api/apps/shop/previews", headers=viewer).status_code == 200
        assert web.delete("/api/apps/shop/previews/5", headers=viewer).status_code == 403
        assert redis.get(keys.app_queued("shop", 5)) is None


class TestTtl:
    def test_sweep_queues_teardowns_of_expired_previews_once(self, tmp_path: Path, store: DeploymentStore,
                                                             redis: redis_lib.Redis) -> None:
        """Past `ttl` since its last push a preview's teardown is queued, once; a fresher one stays."""
        config = make_config(tmp_path, PREVIEWS)
        TestApi().live(redis, 1, updated_at=1000.0)
        TestApi().live(redis, 2, updated_at=1000.0 + 3000)
        queued = sweep_expired(store, config, now=1000.0 + 3601)
        assert [(d.preview, d.trigger) for d in queued] == [(1, Trigger.TEARDOWN)]
        assert sweep_expired(store, config, now=1000.0 + 3601) == []


class TestDashboard:
    def test_lists_previews_and_tears_one_down_with_the_csrf_token(self, previews_app: Flask,
                                                                  store: DeploymentStore,
                                                                  redis: redis_lib.Redis) -> None:
        """The dashboard lists each preview (PR, URL, age) with a tear-down form for deployers; posting it
        with the session's CSRF token queues the teardown, audited; a viewer sees no form."""
        TestApi().live(redis, 5)
        dan = logged_in(previews_app, DAN_TOKEN)
        page = dan.get("/").get_data(as_text=True)
        assert 'id="preview-shop-5"' in page and "PR #5" in page and "http://127.0.0.1:9105/" in page
        assert "/apps/shop/previews/5/remove" in page
        assert "/apps/shop/previews/5/remove" not in logged_in(previews_app, VERA_TOKEN).get("/").get_data(as_text=True)
        assert dan.post("/apps/shop/previews/5/remove", data={}).status_code == 403
        answer = dan.post("/apps/shop/previews/5/remove", data={"csrf_token": csrf_of(dan)})
        assert answer.status_code == 303
        queued = store.get(redis.get(keys.app_queued("shop", 5)).decode())
        assert (queued.trigger, queued.operator) == (Trigger.TEARDOWN, "dan")
        assert audit.recent(redis, app="shop", limit=1)[0].action == audit.REMOVE_PREVIEW
        page = dan.get(answer.headers["Location"]).get_data(as_text=True)
        assert '<dd id="preview">pull request #5' in page and "teardown" in page

    def test_a_failed_preview_does_not_colour_the_app(self, web: FlaskClient, store: DeploymentStore) -> None:
        """The app's state (API and dashboard) is its own newest deployment's, not a preview's."""
        own = store.intake.submit([NewDeployment("shop", commit_sha(1), "refs/heads/main", Trigger.PUSH)])
        store.start(own.deployments[0].id, "")
        store.finish(own.deployments[0].id, DeploymentState.SUCCEEDED, live_sha=commit_sha(1))
        preview = deployment(store, github_pr(web, "opened", 3))
        store.start(preview.id, "")
        store.finish(preview.id, DeploymentState.FAILED, "health check failed")
        shop = next(a for a in web.get("/api/apps", headers=AUTH).json["apps"] if a["name"] == "shop")
        assert shop["state"] == "succeeded"

"""Every row of the webhook table (docs/contract.md, HTTP interface), for each git host, through Flask's
test client and real Redis."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from hooksvc import defaults
from hooksvc.connection import connect
from hooksvc.providers import ZERO_SHA
from hooksvc.providers import payload as payload_module
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import make_config
from tests.helpers.payloads import (
    commit_sha,
    gitea_push,
    gitea_request,
    github_push,
    github_request,
    gitlab_push,
    gitlab_request,
    load,
    payload_text,
)
from tests.helpers.redis_server import RedisServer

SHOP, BLOG, WIKI = "shop-webhook-secret", "blog-webhook-secret", "wiki-webhook-secret"


def app_with_more_apps(tmp_path: Path, redis: redis_lib.Redis, host: str, count: int) -> Flask:
    """The web app with `count` more apps of `host`, each on its own repository with its own secret."""
    extra = "".join(f"""
        [apps.extra-{n}]
        host = "{host}"
        repo = "acme/extra-{n}"
        clone_url = "{tmp_path / f'origin-extra-{n}.git'}"
        tags = "v*"
        secret_env = "EXTRA_{n}_SECRET"
    """ for n in range(count))
    env = {f"EXTRA_{n}_SECRET": f"extra-{n}-webhook-secret" for n in range(count)}
    return create_app(make_config(tmp_path, extra, env=env), connection=redis, listeners=[])


def client_with_github_app(tmp_path: Path, redis: redis_lib.Redis, name: str, repo: str, secret: str) -> FlaskClient:
    """A test client of the web app with one more GitHub app `name` on `repo` (branch main), its own `secret`."""
    extra = f"""
        [apps.{name}]
        host = "github"
        repo = "{repo}"
        clone_url = "{tmp_path / f'origin-{name}.git'}"
        branch = "main"
        secret_env = "EXTRA_APP_SECRET"
    """
    return create_app(make_config(tmp_path, extra, env={"EXTRA_APP_SECRET": secret}), connection=redis,
                      listeners=[]).test_client()


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Count the calls of `module.name` (which keeps working): the list's length is the count."""
    real = getattr(module, name)
    calls: list[int] = []

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


class TestAcceptedPushes:
    def test_github_push_queues_a_deployment(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A signed GitHub push to the configured branch answers 202 with the queued deployment."""
        sha = commit_sha(7)
        resp = client.open("/hooks/github", **github_request(github_push(after=sha), SHOP).client_kwargs())
        assert resp.status_code == 202
        [dep] = resp.json["deployments"]
        assert set(dep) == {"id", "app", "sha", "state"}
        assert dep["app"] == "shop" and dep["sha"] == sha and dep["state"] == "queued"
        assert store.get(dep["id"]).ref == "refs/heads/main"

    def test_github_form_encoded_push(self, client: FlaskClient) -> None:
        """GitHub's form-encoded deliveries (payload=...) are accepted too."""
        hook = github_request(github_push(), SHOP, form=True)
        assert client.open("/hooks/github", **hook.client_kwargs()).status_code == 202

    @pytest.mark.parametrize("variant", ["json", "form", "get", "forgejo"])
    def test_gitea_tag_push_queues_a_deployment(self, client: FlaskClient, variant: str) -> None:
        """Gitea and Forgejo deliveries (JSON, form or GET) of a matching tag are accepted."""
        hook = gitea_request(gitea_push(ref="refs/tags/v2.0"), BLOG, form=variant == "form",
                             get=variant == "get", forgejo=variant == "forgejo")
        resp = client.open("/hooks/gitea", **hook.client_kwargs())
        assert resp.status_code == 202
        assert resp.json["deployments"][0]["app"] == "blog"

    def test_gitlab_push_queues_a_deployment(self, client: FlaskClient) -> None:
        """A GitLab push with the right X-Gitlab-Token to a matching branch is accepted."""
        hook = gitlab_request(gitlab_push(ref="refs/heads/release/3"), WIKI)
        resp = client.open("/hooks/gitlab", **hook.client_kwargs())
        assert resp.status_code == 202 and resp.json["deployments"][0]["app"] == "wiki"

    def test_repository_name_is_case_insensitive(self, client: FlaskClient) -> None:
        """The payload's repository matches the configured repo regardless of case."""
        hook = github_request(github_push(repo="ACME/Shop"), SHOP)
        assert client.open("/hooks/github", **hook.client_kwargs()).status_code == 202


class TestPingAndIgnored:
    def test_github_ping(self, client: FlaskClient) -> None:
        """A signed ping answers 200 {"ok": true, "event": "ping"}."""
        ping = load("github_ping")
        ping["repository"]["full_name"] = "acme/shop"
        resp = client.open("/hooks/github", **github_request(ping, SHOP, event="ping").client_kwargs())
        assert resp.status_code == 200 and resp.json == {"ok": True, "event": "ping"}

    def test_organisation_ping_without_repository_verifies_against_any_app(self, client: FlaskClient) -> None:
        """An organisation hook's ping names no repository: any app's secret of the route verifies it."""
        ping = load("github_ping")
        ping.pop("repository", None)
        resp = client.open("/hooks/github", **github_request(ping, SHOP, event="ping").client_kwargs())
        assert resp.status_code == 200 and resp.json == {"ok": True, "event": "ping"}

    def test_other_branch_is_ignored(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A push to a branch no app deploys answers 200 with the reason and queues nothing."""
        hook = github_request(github_push(ref="refs/heads/dev"), SHOP)
        resp = client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 200 and "refs/heads/dev" in resp.json["ignored"]
        assert store.recent() == []

    def test_deleted_ref_is_ignored(self, client: FlaskClient) -> None:
        """Deleting the deployed branch deploys nothing."""
        hook = github_request(github_push(after=ZERO_SHA), SHOP)
        resp = client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 200 and "deleted" in resp.json["ignored"]

    def test_other_event_is_ignored(self, client: FlaskClient) -> None:
        """A signed non-push event answers 200 ignored."""
        payload = {"action": "opened", "repository": {"full_name": "acme/shop"}}
        resp = client.open("/hooks/github", **github_request(payload, SHOP, event="issues").client_kwargs())
        assert resp.status_code == 200 and "issues" in resp.json["ignored"]

    def test_gitlab_tag_delete_is_ignored(self, client: FlaskClient) -> None:
        """A GitLab branch deletion (zero after, null checkout_sha) deploys nothing."""
        hook = gitlab_request(gitlab_push(ref="refs/heads/release/3", after=ZERO_SHA), WIKI)
        resp = client.open("/hooks/gitlab", **hook.client_kwargs())
        assert resp.status_code == 200 and "ignored" in resp.json


class TestRejected:
    def test_bad_signature_and_unknown_repo_get_the_same_401(self, client: FlaskClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
        """A wrong signature and an unknown repository get one identical body; the log tells them apart."""
        caplog.set_level(logging.WARNING, logger="hooksvc.web")
        bad_sig = client.open("/hooks/github", **github_request(github_push(), "wrong").client_kwargs())
        unknown = client.open("/hooks/github",
                              **github_request(github_push(repo="evil/repo"), "wrong").client_kwargs())
        assert bad_sig.status_code == unknown.status_code == 401
        assert bad_sig.data == unknown.data
        assert "signature missing or wrong for repository 'acme/shop'" in caplog.text
        assert "no app for repository 'evil/repo'" in caplog.text
        assert SHOP not in caplog.text

    def test_valid_signature_for_another_repo_is_401(self, client: FlaskClient) -> None:
        """A body signed with shop's secret but naming another repository deploys nothing."""
        hook = github_request(github_push(repo="acme/other"), SHOP)
        assert client.open("/hooks/github", **hook.client_kwargs()).status_code == 401

    def test_apps_sharing_a_repository_deploy_only_with_their_own_secret(
            self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """Two apps of one repository with their own secrets: a push signed with one deploys that one only."""
        client = client_with_github_app(tmp_path, redis, "shop-canary", "acme/shop", "canary-webhook-secret")
        for secret, app in ((SHOP, "shop"), ("canary-webhook-secret", "shop-canary")):
            resp = client.open("/hooks/github", **github_request(github_push(), secret).client_kwargs())
            assert resp.status_code == 202
            assert [d["app"] for d in resp.json["deployments"]] == [app]

    def test_unparsable_body_with_a_bad_signature_is_401_not_400(self, client: FlaskClient) -> None:
        """The body is looked at before the signature only to order the work: unsigned garbage is still 401."""
        hook = github_request(b"{not json", "not-the-secret")
        resp = client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 401

    def test_missing_signature_is_401(self, client: FlaskClient) -> None:
        """Unsigned GitHub deliveries and Gitea deliveries with empty signature headers are refused."""
        assert client.open("/hooks/github", **github_request(github_push(), None).client_kwargs()).status_code == 401
        assert client.open("/hooks/gitea", **gitea_request(gitea_push(), None).client_kwargs()).status_code == 401

    def test_gitlab_wrong_token_is_401(self, client: FlaskClient) -> None:
        """A GitLab delivery with another token is refused."""
        hook = gitlab_request(gitlab_push(), "not-the-token")
        assert client.open("/hooks/gitlab", **hook.client_kwargs()).status_code == 401

    def test_malformed_body_is_400_with_reason(self, client: FlaskClient) -> None:
        """A correctly signed body that is not JSON answers 400 with a reason."""
        hook = github_request(b"{not json", SHOP)
        resp = client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 400 and resp.json["error"]

    def test_missing_fields_is_400(self, client: FlaskClient) -> None:
        """A signed push without `after` answers 400 naming the field."""
        payload = github_push()
        del payload["after"]
        resp = client.open("/hooks/github", **github_request(payload, SHOP).client_kwargs())
        assert resp.status_code == 400 and "after" in resp.json["error"]

    def test_wrong_content_type_is_400(self, client: FlaskClient) -> None:
        """A signed body with an unsupported content type answers 400."""
        hook = github_request(github_push(), SHOP).with_header("Content-Type", "text/plain")
        resp = client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 400 and "content type" in resp.json["error"].lower()

    def test_unknown_route_is_404_json(self, client: FlaskClient) -> None:
        """An unknown webhook route answers a JSON 404."""
        resp = client.post("/hooks/sourcehut", data=b"{}")
        assert resp.status_code == 404 and "error" in resp.json


class TrapStream(io.RawIOBase):
    """A request body that fails the test if more than `allowed` bytes are read from it."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(buffer)
        self.read_bytes += n
        assert self.read_bytes <= self.allowed, "the server read past the body limit"
        buffer[:n] = b"x" * n
        return n


def post_stream(app: Flask, stream: io.RawIOBase | io.BytesIO, content_length: int | None) -> tuple[int, bytes]:
    """POST `stream` to /hooks/github through the WSGI interface, as a server would hand it over."""
    environ = EnvironBuilder(path="/hooks/github", method="POST", content_type="application/json").get_environ()
    environ["wsgi.input"] = stream
    if content_length is None:
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    status: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type]
    return int(status[0].split()[0]), body


class TestBodyLimit:
    def test_declared_oversize_body_is_413_without_reading_it(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """A Content-Length over max_body_bytes answers 413 before any body byte is read."""
        app = create_app(make_config(tmp_path, max_body_bytes="1024"), connection=redis, listeners=[])
        stream = TrapStream(allowed=0)
        status, body = post_stream(app, stream, 50 * 1024 * 1024)
        assert status == 413 and b"over the limit" in body
        assert stream.read_bytes == 0

    def test_undeclared_oversize_body_stops_at_the_limit(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """A chunked body is read only up to one byte past the limit, then refused with 413."""
        app = create_app(make_config(tmp_path, max_body_bytes="1024"), connection=redis, listeners=[])
        stream = TrapStream(allowed=1025)
        status, _ = post_stream(app, stream, None)
        assert status == 413
        assert 1024 < stream.read_bytes <= 1025

    def test_body_shorter_than_its_content_length_is_400(self, app: Flask) -> None:
        """A body that ends before its Content-Length (a sender that gave up) is refused, not half-parsed."""
        status, body = post_stream(app, io.BytesIO(b'{"ref": '), 2048)
        assert status == 400 and b"body ended after 8 of the 2048 bytes" in body


class TestDuplicates:
    def test_same_delivery_id_is_a_duplicate(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A redelivery (same X-GitHub-Delivery) answers 200 duplicate with the first deployments."""
        hook = github_request(github_push(), SHOP, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
        first = client.open("/hooks/github", **hook.client_kwargs())
        again = client.open("/hooks/github", **hook.client_kwargs())
        assert again.status_code == 200 and again.json["duplicate"] is True
        assert again.json["deployments"] == first.json["deployments"]
        assert len(store.recent()) == 1

    def test_replayed_body_under_a_new_delivery_id_is_a_duplicate(self, client: FlaskClient,
                                                                  store: DeploymentStore) -> None:
        """The same signed body sent again with another delivery id is a replay: no new deployment."""
        payload = github_push()
        first = github_request(payload, SHOP, delivery_id="one")
        second = github_request(payload, SHOP, delivery_id="two")
        assert client.open("/hooks/github", **first.client_kwargs()).status_code == 202
        resp = client.open("/hooks/github", **second.client_kwargs())
        assert resp.status_code == 200 and resp.json["duplicate"] is True
        assert len(store.recent()) == 1

    def test_replay_with_a_new_delivery_id_and_query_string_is_a_duplicate(
            self, client: FlaskClient, store: DeploymentStore) -> None:
        """The query string is not signed: a replayed body under a new delivery id and `?x=1` deploys nothing."""
        payload = github_push()
        assert client.open("/hooks/github", **github_request(payload, SHOP, delivery_id="one").client_kwargs()
                           ).status_code == 202
        replay = github_request(payload, SHOP, delivery_id="two").client_kwargs()
        resp = client.open("/hooks/github", **{**replay, "query_string": {"x": "1"}})
        assert resp.status_code == 200 and resp.json["duplicate"] is True
        assert len(store.recent()) == 1

    def test_gitea_payload_replayed_as_json_form_and_get_deploys_once(
            self, client: FlaskClient, store: DeploymentStore) -> None:
        """Gitea signs the payload text, not the body: the same payload sent as JSON, form and GET is one delivery."""
        text = payload_text(gitea_push(ref="refs/tags/v3.0"))
        answers = [
            client.open("/hooks/gitea", **gitea_request(text, BLOG, form=how == "form", get=how == "get",
                                                         delivery_id=f"delivery-{how}").client_kwargs())
            for how in ("json", "form", "get")
        ]
        assert [a.status_code for a in answers] == [202, 200, 200]
        assert answers[1].json["duplicate"] is True and answers[2].json["duplicate"] is True
        assert len(store.recent()) == 1

    def test_gitea_get_replay_with_an_extra_query_parameter_is_a_duplicate(
            self, client: FlaskClient, store: DeploymentStore) -> None:
        """Only `payload` of a GET delivery is signed: another query parameter does not make it new."""
        hook = gitea_request(gitea_push(ref="refs/tags/v3.1"), BLOG, get=True, delivery_id="one")
        assert client.open("/hooks/gitea", **hook.client_kwargs()).status_code == 202
        replay = gitea_request(gitea_push(ref="refs/tags/v3.1"), BLOG, get=True, delivery_id="two")
        replay = replace(replay, query={**replay.query, "x": "1"})
        resp = client.open("/hooks/gitea", **replay.client_kwargs())
        assert resp.status_code == 200 and resp.json["duplicate"] is True
        assert len(store.recent()) == 1

    def test_a_delivery_id_seen_for_one_app_does_not_drop_another_apps_push(
            self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """Two apps on /hooks/github with their own repositories and secrets, one delivery id: each push
        deploys its app, and only a redelivery to the same app is a duplicate."""
        client = client_with_github_app(tmp_path, redis, "docs", "acme/docs", "docs-webhook-secret")
        same_id = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        shop = github_request(github_push(after=commit_sha(1)), SHOP, delivery_id=same_id)
        docs = github_request(github_push(repo="acme/docs", after=commit_sha(2)), "docs-webhook-secret",
                              delivery_id=same_id)

        first = client.open("/hooks/github", **shop.client_kwargs())
        second = client.open("/hooks/github", **docs.client_kwargs())
        again = client.open("/hooks/github", **shop.client_kwargs())

        assert (first.status_code, [d["app"] for d in first.json["deployments"]]) == (202, ["shop"])
        assert (second.status_code, [d["app"] for d in second.json["deployments"]]) == (202, ["docs"])
        assert (again.status_code, again.json["duplicate"]) == (200, True)
        assert [d["id"] for d in again.json["deployments"]] == [d["id"] for d in first.json["deployments"]]

    def test_newer_push_supersedes_queued_one(self, client: FlaskClient, store: DeploymentStore) -> None:
        """Two pushes in a row leave the first superseded and the second queued."""
        a = client.open("/hooks/github", **github_request(github_push(after=commit_sha(1)), SHOP).client_kwargs())
        b = client.open("/hooks/github", **github_request(github_push(after=commit_sha(2)), SHOP).client_kwargs())
        assert store.get(a.json["deployments"][0]["id"]).state == "superseded"
        assert store.get(b.json["deployments"][0]["id"]).state == "queued"



class TestRedisDown:
    def test_redis_down_is_503_then_recovers(self, tmp_path: Path, own_redis: RedisServer) -> None:
        """With Redis stopped a push answers 503 and writes nothing; the redelivery succeeds once Redis is back."""
        app = create_app(make_config(tmp_path), connection=connect(own_redis.url), listeners=[])
        client = app.test_client()
        hook = github_request(github_push(), SHOP, delivery_id="d-503")
        own_redis.stop()
        down = client.open("/hooks/github", **hook.client_kwargs())
        assert down.status_code == 503 and "Redis is unreachable" in down.json["error"]
        assert client.get("/healthz").status_code == 503
        own_redis.start()
        store = DeploymentStore(connect(own_redis.url))
        assert store.recent() == []
        again = client.open("/hooks/github", **hook.client_kwargs())
        assert again.status_code == 202
        assert [d.delivery_id for d in store.recent()] == ["d-503"]
        assert client.get("/healthz").status_code == 200


class TestWebhookMetrics:
    def test_each_answer_is_counted_by_provider_and_outcome(self, client: FlaskClient) -> None:
        """Every webhook answer is counted in /metrics under its provider and outcome."""
        client.open("/hooks/github", **github_request(github_push(), SHOP).client_kwargs())
        client.open("/hooks/github", **github_request(github_push(), "wrong").client_kwargs())
        client.open("/hooks/gitlab", **gitlab_request(gitlab_push(ref="refs/heads/dev"), WIKI).client_kwargs())
        text = client.get("/metrics").text
        assert 'hooksvc_webhooks_total{outcome="accepted",provider="github"} 1.0' in text
        assert 'hooksvc_webhooks_total{outcome="unauthorized",provider="github"} 1.0' in text
        assert 'hooksvc_webhooks_total{outcome="ignored",provider="gitlab"} 1.0' in text


class TestHeaderView:
    def test_lookups_ignore_case_and_repr_shows_no_values(self) -> None:
        """The provider sees headers case-insensitively, and a request's repr names headers without values."""
        from werkzeug.datastructures import Headers

        from hooksvc.providers import WebhookRequest
        from hooksvc.web.hooks import HeaderView

        view = HeaderView(Headers({"X-Gitlab-Token": "wiki-webhook-secret", "Content-Type": "application/json"}))
        req = WebhookRequest(headers=view, body=b"{}", query={})
        assert req.header("X-GITLAB-TOKEN") == "wiki-webhook-secret"
        assert req.header("x-missing") is None
        assert sorted(view) == ["content-type", "x-gitlab-token"]
        assert "wiki-webhook-secret" not in repr(req) and "x-gitlab-token" in repr(req)


class TestHostileInput:
    def test_huge_form_body_of_empty_fields_is_refused_after_one_look(
            self, tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        """A 4.8 MB unsigned `a=&a=&...` body, with eleven Gitea apps to check, is refused without parsing it."""
        client = app_with_more_apps(tmp_path, redis, "gitea", 10).test_client()
        form_reads = counting(monkeypatch, payload_module, "form_payload")
        parses = counting(monkeypatch, payload_module, "decode_form_value")
        body = b"a=&" * 1_600_000
        assert len(body) < defaults.MAX_BODY_BYTES
        hook = gitea_request(gitea_push(), "forged").with_header("Content-Type", "application/x-www-form-urlencoded")
        resp = client.open("/hooks/gitea", **hook.with_body(body).client_kwargs())
        assert resp.status_code == 401
        assert len(form_reads) <= 1 and parses == []

    def test_unsigned_github_form_is_refused_without_being_decoded(
            self, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        """GitHub signs a form body as sent: one whose signature is wrong is refused before its payload is decoded."""
        decoded = counting(monkeypatch, payload_module, "decode_form_value")
        caplog.set_level(logging.WARNING, logger="hooksvc.web")
        resp = client.open("/hooks/github", **github_request(github_push(), "forged", form=True).client_kwargs())
        assert resp.status_code == 401 and decoded == []
        assert "(form body not parsed)" in caplog.text
        signed = client.open("/hooks/github", **github_request(github_push(), SHOP, form=True).client_kwargs())
        assert signed.status_code == 202 and decoded != []

    @pytest.mark.parametrize("secret", ["forged", BLOG])
    def test_form_payload_is_read_once_however_many_apps_there_are(
            self, tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
        """A form-encoded Gitea delivery's payload is extracted once per request, not once per app's secret."""
        client = app_with_more_apps(tmp_path, redis, "gitea", 10).test_client()
        form_reads = counting(monkeypatch, payload_module, "form_payload")
        resp = client.open("/hooks/gitea", **gitea_request(gitea_push(), secret, form=True).client_kwargs())
        assert resp.status_code == (202 if secret == BLOG else 401)
        assert len(form_reads) == 1

    def test_bad_signature_costs_the_same_for_known_and_unknown_repositories(
            self, tmp_path: Path, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad signature is checked against each app once, whether its repository is configured or not."""
        client = app_with_more_apps(tmp_path, redis, "github", 4).test_client()
        macs = counting(monkeypatch, payload_module, "hmac_sha256_hex")
        known = client.open("/hooks/github", **github_request(github_push(repo="acme/shop"), "forged").client_kwargs())
        known_macs = len(macs)
        unknown = client.open("/hooks/github", **github_request(github_push(repo="evil/x"), "forged").client_kwargs())
        assert known.status_code == unknown.status_code == 401
        assert known_macs == len(macs) - known_macs == 5  # shop and the four extra apps

    def test_huge_repository_name_writes_a_short_log_line(
            self, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
        """An unsigned push naming a 500 kB repository is refused with a log line of bounded length."""
        caplog.set_level(logging.INFO)
        hook = github_request(github_push(repo="evil/" + "x" * 500_000), "forged")
        assert client.open("/hooks/github", **hook.client_kwargs()).status_code == 401
        [line] = [r.getMessage() for r in caplog.records if "evil/" in r.getMessage()]
        assert len(line) < 2 * defaults.LOG_VALUE_LIMIT + 200 and "[500005 characters]" in line

    def test_line_breaks_in_the_path_cannot_forge_a_log_line(
            self, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
        """A line break sent percent-encoded in the URL is logged escaped: no log line starts with the sender's text."""
        caplog.set_level(logging.DEBUG)
        for path in ("/hooks/x%0aFORGED", "/hooks/github%0d%0aFORGED", "/api/deployments/1%0aFORGED",
                     "/api/deployments/1%e2%80%a8FORGED", "/deployments/1%0aFORGED"):
            for method in ("GET", "POST"):
                client.open(path, method=method, data=b"{}", content_type="application/json")
        logged = [r.getMessage() for r in caplog.records if "FORGED" in r.getMessage()]
        assert len(logged) >= 3, "the refusals of the API and the pages are logged"
        assert not [line for line in caplog.text.splitlines() if line.startswith("FORGED")]
        assert not [m for m in logged if "\n" in m or "\r" in m or "\u2028" in m]

"""Plain git servers: `POST /hooks/git` from a bare repository's post-receive hook, signed with
`X-Hooksvc-Signature-256` — the signature, the payload, and the webhook table's rows through Flask's
test client and real Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.bare_repo_hook import RefUpdate, push_body
from hooksvc.config import parse_config
from hooksvc.errors import BadRequest
from hooksvc.providers import ZERO_SHA, WebhookRequest, git
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import PLAIN_GIT_APP, make_config
from tests.helpers.payloads import commit_sha, github_signature, single_change

SECRET = "site-hook-secret"


def body(after: str = commit_sha(2), ref: str = "refs/heads/main", repo: str = "site",
         before: str = commit_sha(1), forced: bool = False) -> bytes:
    """What the hook sends, built by the hook's own function."""
    return push_body(repo, RefUpdate(before, after, ref), forced)


def post(client: FlaskClient, data: bytes, secret: str | None = SECRET) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        # Signed by the tests' own GitHub-style signer: the same scheme, written independently.
        headers["X-Hooksvc-Signature-256"] = github_signature(data, secret)
    return client.post("/hooks/git", data=data, headers=headers)


@pytest.fixture
def git_client(tmp_path: Path, redis: redis_lib.Redis) -> FlaskClient:
    config = make_config(tmp_path, PLAIN_GIT_APP, env={"SITE_SECRET": SECRET})
    return create_app(config, connection=redis, listeners=[]).test_client()


class TestGitSignature:
    @given(data=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40))
    def test_sign_verify_round_trip(self, data: bytes, secret: str) -> None:
        """What `sign` produces verifies under the same secret, and not under another."""
        req = WebhookRequest(headers={"x-hooksvc-signature-256": git.sign(secret, data)}, body=data, query={})
        assert git.verify(req, secret)
        assert not git.verify(req, secret + "x")

    def test_unsigned_or_tampered_bodies_do_not_verify(self) -> None:
        """No header, or a body changed after signing, fails verification."""
        data = body()
        assert not git.verify(WebhookRequest(headers={}, body=data, query={}), SECRET)
        signed = {"x-hooksvc-signature-256": git.sign(SECRET, data)}
        assert not git.verify(WebhookRequest(headers=signed, body=data.replace(b"main", b"prod"), query={}), SECRET)


class TestGitPayload:
    def test_a_pushed_ref_parses_with_its_repository_and_delivery(self) -> None:
        """The hook's body carries the ref, both shas, the forced flag and a delivery id inside the signed bytes."""
        data = body(forced=True)
        parsed = git.parse(WebhookRequest(headers={"content-type": "application/json"}, body=data, query={}))
        assert parsed.event == "push" and parsed.repo == "site"
        assert single_change(parsed).after == commit_sha(2) and single_change(parsed).forced
        assert parsed.delivery_id == json.loads(data)["delivery"]

    def test_a_body_without_the_new_sha_is_a_bad_request(self) -> None:
        """A missing field is named in the 400's reason."""
        data = json.dumps({"repository": "site", "ref": "refs/heads/main", "before": commit_sha(1)}).encode()
        with pytest.raises(BadRequest, match="'after'"):
            git.parse(WebhookRequest(headers={"content-type": "application/json"}, body=data, query={}))


class TestGitRoute:
    def test_a_signed_push_queues_a_deployment(self, git_client: FlaskClient, store: DeploymentStore) -> None:
        """A push of the configured branch, signed with the app's secret, answers 202 with the deployment."""
        resp = post(git_client, body())
        assert resp.status_code == 202, resp.json
        [dep] = resp.json["deployments"]
        assert dep["app"] == "site" and dep["sha"] == commit_sha(2)
        assert store.get(dep["id"]).ref == "refs/heads/main"

    def test_a_bad_or_missing_signature_is_401(self, git_client: FlaskClient, store: DeploymentStore) -> None:
        """Another secret, or none, is refused and queues nothing."""
        assert post(git_client, body(), secret="not-the-secret").status_code == 401
        assert post(git_client, body(), secret=None).status_code == 401
        assert store.recent() == []

    def test_a_replayed_request_is_a_duplicate_but_a_new_push_of_the_same_commits_is_not(
        self, git_client: FlaskClient
    ) -> None:
        """The same signed bytes again are a duplicate; a second push of the same refs has its own delivery id."""
        data = body()
        first = post(git_client, data)
        again = post(git_client, data)
        assert again.status_code == 200 and again.json["duplicate"] is True
        assert again.json["deployments"][0]["id"] == first.json["deployments"][0]["id"]
        assert post(git_client, body()).status_code == 202

    def test_routing_by_repository_and_branch(self, git_client: FlaskClient) -> None:
        """Another branch and a deleted ref are ignored; a repository no app has is 401 (with a valid signature)."""
        other = post(git_client, body(ref="refs/heads/dev"))
        assert other.status_code == 200 and "matches no app" in other.json["ignored"]
        deleted = post(git_client, body(after=ZERO_SHA))
        assert deleted.status_code == 200 and "deleted" in deleted.json["ignored"]
        assert post(git_client, body(repo="someone-else")).status_code == 401

    def test_a_github_app_with_the_same_secret_is_not_reached_through_the_git_route(
        self, tmp_path: Path, redis: redis_lib.Redis
    ) -> None:
        """/hooks/git serves only apps on hosts of kind git: a GitHub app's repository and secret get 401."""
        config = make_config(tmp_path, PLAIN_GIT_APP, env={"SITE_SECRET": SECRET})
        client = create_app(config, connection=redis, listeners=[]).test_client()
        assert post(client, body(repo="acme/shop"), secret="shop-webhook-secret").status_code == 401


class TestGitConfig:
    def test_a_git_host_needs_no_api_url_and_an_app_repo_defaults_to_its_name(self, tmp_path: Path) -> None:
        """`kind = "git"` without api_url or token is valid; the app's repo is its name unless given."""
        config = make_config(tmp_path, PLAIN_GIT_APP, env={"SITE_SECRET": SECRET})
        assert config.hosts["server"].api_url == "" and config.apps["site"].repo == "site"

    def test_other_kinds_still_need_an_api_url(self, tmp_path: Path) -> None:
        """Only the git kind may leave api_url out."""
        with pytest.raises(Exception, match="hosts.gh.api_url"):
            parse_config('[hosts.gh]\nkind = "github"\n', str(tmp_path / "c.toml"), {})

"""The webhook routes the host registry adds (SPEC §14): /hooks/bitbucket, /hooks/bitbucket-server and
/hooks/gogs, served through the real web app and Redis like every other host."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.deployments import DeploymentState
from hooksvc.providers import ZERO_SHA
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import MORE_HOSTS_APPS, MORE_HOSTS_ENV, make_config
from tests.helpers.payloads import (
    bitbucket_change,
    bitbucket_push,
    bitbucket_request,
    bitbucket_server_push,
    bitbucket_server_request,
    commit_sha,
    gogs_push,
    gogs_request,
)

API = MORE_HOSTS_ENV["API_SECRET"]
CONSOLE = MORE_HOSTS_ENV["CONSOLE_SECRET"]
DOCS = MORE_HOSTS_ENV["DOCS_SECRET"]
#: An app on Bitbucket Cloud that deploys tags, for pushes that move several matching refs at once.
TAG_APP = """
    [apps.api-releases]
    host = "bitbucket"
    repo = "acme/api"
    clone_url = "/srv/git/api.git"
    tags = "v*"
    secret_env = "API_SECRET"
"""


@pytest.fixture
def client(tmp_path: Path, redis: redis_lib.Redis) -> FlaskClient:
    config = make_config(tmp_path, MORE_HOSTS_APPS + TAG_APP, env=MORE_HOSTS_ENV)
    return create_app(config, connection=redis, listeners=[]).test_client()


class TestNewRoutes:
    def test_bitbucket_cloud_push_queues_a_deployment(self, client: FlaskClient, store: DeploymentStore) -> None:
        """A signed `repo:push` of main to /hooks/bitbucket queues the Bitbucket app at the pushed commit."""
        resp = client.open("/hooks/bitbucket", **bitbucket_request(bitbucket_push(), API).client_kwargs())
        assert resp.status_code == 202, resp.json
        [dep] = resp.json["deployments"]
        assert (dep["app"], dep["sha"]) == ("api", commit_sha(1))
        assert store.get(dep["id"]).ref == "refs/heads/main"

    def test_bitbucket_data_center_push_queues_a_deployment(self, client: FlaskClient) -> None:
        """A signed `repo:refs_changed` to /hooks/bitbucket-server queues the Data Center app."""
        hook = bitbucket_server_request(bitbucket_server_push(after=commit_sha(4)), CONSOLE)
        resp = client.open("/hooks/bitbucket-server", **hook.client_kwargs())
        assert resp.status_code == 202, resp.json
        assert [(d["app"], d["sha"]) for d in resp.json["deployments"]] == [("console", commit_sha(4))]

    @pytest.mark.parametrize("form", [False, True])
    def test_gogs_push_queues_a_deployment(self, client: FlaskClient, form: bool) -> None:
        """A signed Gogs push (JSON or form body) to /hooks/gogs queues the Gogs app."""
        hook = gogs_request(gogs_push(after=commit_sha(5)), DOCS, form=form)
        resp = client.open("/hooks/gogs", **hook.client_kwargs())
        assert resp.status_code == 202, resp.json
        assert [(d["app"], d["sha"]) for d in resp.json["deployments"]] == [("docs", commit_sha(5))]

    @pytest.mark.parametrize(("route", "hook"), [
        ("bitbucket", bitbucket_request(bitbucket_push(), "forged")),
        ("bitbucket", bitbucket_request(bitbucket_push(), None)),
        ("bitbucket-server", bitbucket_server_request(bitbucket_server_push(), API)),
        ("gogs", gogs_request(gogs_push(), CONSOLE)),
    ], ids=["bitbucket-forged", "bitbucket-unsigned", "data-center-other-apps-secret", "gogs-other-apps-secret"])
    def test_bad_signatures_are_401(self, client: FlaskClient, route: str, hook: object) -> None:
        """A delivery not signed with its own app's secret is refused, whatever other app's secret signed it."""
        resp = client.open(f"/hooks/{route}", **hook.client_kwargs())  # type: ignore[attr-defined]
        assert resp.status_code == 401

    @pytest.mark.parametrize("route", ["bitbucket", "bitbucket-server", "gogs"])
    def test_get_is_refused(self, client: FlaskClient, route: str) -> None:
        """These hosts deliver by POST only: a GET is a bad request that says so."""
        resp = client.get(f"/hooks/{route}?payload=%7B%7D")
        assert resp.status_code == 400 and "accepts POST only" in resp.json["error"]

    def test_data_center_test_connection_is_a_ping(self, client: FlaskClient) -> None:
        """Data Center's "Test connection" (`diagnostics:ping`), signed, answers 200 ping."""
        hook = bitbucket_server_request(b'{"test": true}', CONSOLE, event="diagnostics:ping")
        resp = client.open("/hooks/bitbucket-server", **hook.client_kwargs())
        assert resp.status_code == 200 and resp.json["event"] == "ping"

    def test_gogs_tag_create_is_ignored(self, client: FlaskClient) -> None:
        """Gogs announces a tag with `create`, which is no push and deploys nothing."""
        payload = {"ref": "v1", "ref_type": "tag", "repository": {"full_name": "acme/docs"}}
        resp = client.open("/hooks/gogs", **gogs_request(payload, DOCS, event="create").client_kwargs())
        assert resp.status_code == 200 and resp.json["ignored"] == "event 'create' is not a push"

    def test_bitbucket_retry_of_a_delivery_is_a_duplicate(self, client: FlaskClient) -> None:
        """Bitbucket re-sends a delivery after a 5xx with the same X-Request-UUID: the second is a duplicate."""
        hook = bitbucket_request(bitbucket_push(), API, delivery_id="b1f0c5e2-retry")
        first = client.open("/hooks/bitbucket", **hook.client_kwargs())
        second = client.open("/hooks/bitbucket", **hook.client_kwargs())
        assert first.status_code == 202 and second.status_code == 200
        assert second.json["duplicate"] is True
        assert [d["id"] for d in second.json["deployments"]] == [d["id"] for d in first.json["deployments"]]


class TestSeveralRefChanges:
    def test_two_matching_tags_in_one_push_keep_the_last_one_queued(
            self, client: FlaskClient, store: DeploymentStore) -> None:
        """A push of two tags that both match one app makes two deployments in payload order; the
        earlier is superseded by the later at once, so one deploys and the other says why not."""
        payload = bitbucket_push("acme/api", bitbucket_change("refs/tags/v1.1", commit_sha(11), None),
                                 bitbucket_change("refs/tags/v1.2", commit_sha(12), None))
        resp = client.open("/hooks/bitbucket", **bitbucket_request(payload, API).client_kwargs())
        assert resp.status_code == 202, resp.json
        first, second = (store.get(d["id"]) for d in resp.json["deployments"])
        assert (first.app, first.sha, second.app, second.sha) == ("api-releases", commit_sha(11),
                                                                   "api-releases", commit_sha(12))
        assert first.state is DeploymentState.SUPERSEDED and commit_sha(12)[:12] in first.error
        assert second.state is DeploymentState.QUEUED

    def test_branch_and_tag_in_one_push_deploy_both_apps(self, client: FlaskClient) -> None:
        """A push of main and a release tag deploys the branch app and the tag app, each at its own commit."""
        payload = bitbucket_push("acme/api", bitbucket_change("refs/heads/main", commit_sha(21), commit_sha(20)),
                                 bitbucket_change("refs/tags/v2.0", commit_sha(22), None))
        resp = client.open("/hooks/bitbucket", **bitbucket_request(payload, API).client_kwargs())
        assert resp.status_code == 202
        assert sorted((d["app"], d["sha"]) for d in resp.json["deployments"]) == [
            ("api", commit_sha(21)), ("api-releases", commit_sha(22))]

    def test_a_push_that_only_deletes_is_ignored(self, client: FlaskClient) -> None:
        """Deleting main and a tag in one push deploys nothing and names both refs."""
        payload = bitbucket_push("acme/api", bitbucket_change("refs/heads/main", None, commit_sha(1)),
                                 bitbucket_change("refs/tags/v1.0", None, commit_sha(1)))
        resp = client.open("/hooks/bitbucket", **bitbucket_request(payload, API).client_kwargs())
        assert resp.status_code == 200
        assert resp.json["ignored"] == "refs refs/heads/main, refs/tags/v1.0 were deleted"

    def test_data_center_delete_beside_an_update(self, client: FlaskClient) -> None:
        """A Data Center push that deletes a branch and updates main deploys main only."""
        deleted = {"ref": {"id": "refs/heads/old", "displayId": "old", "type": "BRANCH"}, "refId": "refs/heads/old",
                   "fromHash": commit_sha(1), "toHash": ZERO_SHA, "type": "DELETE"}
        payload = bitbucket_server_push("OPS/console", "refs/heads/main", commit_sha(31), commit_sha(30), deleted)
        resp = client.open("/hooks/bitbucket-server", **bitbucket_server_request(payload, CONSOLE).client_kwargs())
        assert resp.status_code == 202
        assert [(d["app"], d["sha"]) for d in resp.json["deployments"]] == [("console", commit_sha(31))]

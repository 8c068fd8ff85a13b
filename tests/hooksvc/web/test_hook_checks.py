"""CI events on the webhook routes: signed like pushes, recorded only for apps that gate on checks."""

from __future__ import annotations

from pathlib import Path

import redis as redis_lib

from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import make_config
from tests.helpers.payloads import github_request, load

SECRET = "gated-webhook-secret"
GATED = """
    [apps.gated]
    host = "github"
    repo = "acme/gated"
    clone_url = "/srv/gated.git"
    secret_env = "GATED_SECRET"
    require_checks = ["Octocoders-linter"]
"""


def check_run(repo: str, secret: str | None) -> dict[str, object]:
    payload = load("github_check_run_completed")
    payload["repository"]["full_name"] = repo
    return github_request(payload, secret, event="check_run").client_kwargs()


def test_a_signed_check_run_is_recorded_for_the_gated_app(tmp_path: Path, redis: redis_lib.Redis) -> None:
    """A signed check_run for a gated app's repository is answered 202 and its report recorded."""
    client = create_app(make_config(tmp_path, GATED, env={"GATED_SECRET": SECRET}), connection=redis).test_client()
    answer = client.open("/hooks/github", **check_run("acme/gated", SECRET))
    assert answer.status_code == 202
    sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert answer.get_json() == {"checks": {"sha": sha, "apps": ["gated"], "names": ["Octocoders-linter"]}}
    [report] = DeploymentStore(redis).checks.read("gated", sha).values()
    assert (report.name, str(report.state)) == ("Octocoders-linter", "success")


def test_a_check_event_of_an_ungated_repository_is_ignored(tmp_path: Path, redis: redis_lib.Redis) -> None:
    """A check event for an app that does not gate on checks changes nothing: 200 ignored."""
    client = create_app(make_config(tmp_path), connection=redis).test_client()
    answer = client.open("/hooks/github", **check_run("acme/shop", "shop-webhook-secret"))
    assert answer.status_code == 200
    assert answer.get_json() == {"ignored": "no app of this repository sets require_checks"}
    assert redis.keys("hooksvc:checks:*") == []


def test_an_unsigned_check_event_is_refused(tmp_path: Path, redis: redis_lib.Redis) -> None:
    """A check event is verified like a push: a wrong signature gets 401 and records nothing."""
    client = create_app(make_config(tmp_path, GATED, env={"GATED_SECRET": SECRET}), connection=redis).test_client()
    assert client.open("/hooks/github", **check_run("acme/gated", "not-the-secret-at-all")).status_code == 401
    assert redis.keys("hooksvc:checks:*") == []

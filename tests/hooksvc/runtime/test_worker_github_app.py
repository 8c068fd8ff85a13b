"""End to end as a GitHub App: a signed push to the real web app → Redis → a real `hooksvc worker
--burst` process that clones a private repository over git's HTTP protocol with an installation
token, deploys it with compose, and reports the commit status, the GitHub deployment and the check
run with that token.

Everything is real (Redis, the Docker engine, git and its http-backend, the worker process) except
GitHub's API, which is the checking stand-in of fake_git_host: it verifies the App's JWT with the
App's public key and hands out the installation tokens the git server accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc.config import load_config
from hooksvc.deployments import DeploymentState
from hooksvc.providers import ZERO_SHA
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fake_git_host import FakeGitHost, FakeGitHubApp
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitHttpServer
from tests.helpers.github_app import APP_ID, INSTALLATION_ID, app_key, write_app_key
from tests.helpers.payloads import github_push, github_request

pytestmark = pytest.mark.docker

SECRET = "app-webhook-secret"
DEPLOY_TIMEOUT = 180


def test_a_push_deploys_a_private_repository_and_reports_as_the_app(
    tmp_path: Path, compose_project: str, base_image: str, redis: redis_lib.Redis,
) -> None:
    """Push → deployed from a private origin read with the installation token → status success and
    check run completed success, every request with that token, which no log line and no file holds."""
    key = write_app_key(tmp_path)
    app = FakeGitHubApp(APP_ID, app_key().public_key(), INSTALLATION_ID, frozenset({"acme/web"}))
    with FakeGitHost({}, github_app=app) as fake, \
            GitHttpServer(tmp_path / "git", token=None, accepts=fake.accepts_installation_token) as git_server:
        origin = git_server.origin("web")
        sha = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
        path = tmp_path / "hooksvc.toml"
        path.write_text(textwrap.dedent(f"""
            [server]
            public_url = "http://deploy.test"
            [redis]
            url = "{TEST_REDIS_URL}"
            [worker]
            state_dir = "{tmp_path / 'state'}"
            [hosts.github]
            kind = "github"
            api_url = "{fake.url}/github"
            app_id = {APP_ID}
            private_key_file = "{key}"
            [apps.web]
            host = "github"
            repo = "acme/web"
            clone_url = "{origin.url}"
            secret_env = "WEB_SECRET"
            project = "{compose_project}"
            health_timeout = "40s"
            start_grace = "2s"
        """))
        env = {**os.environ, "WEB_SECRET": SECRET, "HOOKSVC_API_TOKENS": "operator-token-000001"}
        env.pop("REDIS_URL", None)
        client = create_app(load_config(str(path), env), connection=redis).test_client()
        push = github_request(github_push("acme/web", "refs/heads/main", sha, ZERO_SHA), SECRET)
        resp = client.open("/hooks/github", **push.client_kwargs())
        assert resp.status_code == 202, resp.json
        [queued] = resp.json["deployments"]

        result = subprocess.run(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker", "--burst"],
            env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        store = DeploymentStore(redis)
        done = store.get(queued["id"])
        log = "\n".join(store.logs.read(done.id)[0])
        assert done.state is DeploymentState.SUCCEEDED, log[-3000:]

        tokens = fake.issued_tokens
        assert tokens, "no installation token was handed out"
        # The clone: every request to the private origin authorized, as x-access-token.
        assert git_server.requests and all(ok for _, _, ok, _ in git_server.requests)
        assert {user for *_, user in git_server.requests} == {"x-access-token"}
        # The reports: status, deployment and check run, each with an installation token.
        assert fake.violations == []
        assert fake.statuses("github", sha, "hooksvc/web") == ["pending", "pending", "success"]
        assert {a.headers["authorization"] for a in fake.accepted} <= {f"Bearer {t}" for t in tokens}
        [deployment] = fake.deployments("github")
        assert deployment.state == "success"
        [run] = fake.check_runs()
        assert (run.name, run.head_sha, run.status, run.conclusion) == ("hooksvc/web", sha, "completed", "success")
        assert run.latest["details_url"] == f"http://deploy.test/deployments/{done.id}"
        # Never on disk, never in a log.
        for token in tokens:
            assert token not in log and token not in result.stderr and token not in result.stdout
            hits = [p for p in (tmp_path / "state").rglob("*")
                    if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes()]
            assert hits == []

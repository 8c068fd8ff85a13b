"""The dashboard's confirm step with a real worker: signed push → burst worker → live release, then a
long-running `hooksvc worker` answers the confirm page's plan over Redis, against real git and Docker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import docker
import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from hooksvc.config import load_config
from hooksvc.deployments import DeploymentState
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from tests.helpers.payloads import github_push, github_request
from tests.helpers.processes import stop_process_groups
from tests.hooksvc.web.test_pages import CHROMIUM, DESKTOP, Chromium, LiveServer, Tab

pytestmark = pytest.mark.docker

SECRET = "web-webhook-secret"
HOST_TOKEN = "github-api-token"
OPERATOR_TOKEN = "operator-token-000001"
#: A deployment of the sample app takes a few seconds; this bounds a stuck one.
DEPLOY_TIMEOUT = 180
AUTHOR = "Test Author"  # tests.helpers.git commits as this author
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def write_config(tmp: Path, api_url: str, origin: GitOrigin, project: str) -> Path:
    path = tmp / "hooksvc.toml"
    path.write_text(textwrap.dedent(f"""
        [server]
        public_url = "http://deploy.test"
        [redis]
        url = "{TEST_REDIS_URL}"
        [worker]
        state_dir = "{tmp / 'state'}"
        [hosts.github]
        kind = "github"
        api_url = "{api_url}/github"
        token_env = "HOST_TOKEN"
        [apps.web]
        host = "github"
        repo = "acme/web"
        clone_url = "{origin.path}"
        branch = "main"
        secret_env = "WEB_SECRET"
        project = "{project}"
        health_timeout = "40s"
        start_grace = "2s"
    """))
    return path


def environment() -> dict[str, str]:
    env = {**os.environ, "WEB_SECRET": SECRET, "HOST_TOKEN": HOST_TOKEN, "HOOKSVC_API_TOKENS": OPERATOR_TOKEN}
    env.pop("REDIS_URL", None)
    return env


def hooksvc_worker(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker", *args]


def screenshot_the_plan(app: Flask, tmp_path: Path) -> None:
    """The deploy's confirm step with its plan, in headless Chromium (when installed), for the docs."""
    if CHROMIUM is None:
        return
    server = LiveServer(app)
    chromium = Chromium(CHROMIUM, tmp_path / "chromium-profile")
    try:
        tab = Tab(chromium, DESKTOP)
        tab.goto(f"{server.url}/login")
        tab.submit_login(OPERATOR_TOKEN)
        tab.goto(f"{server.url}/apps/web/deploy")
        tab.evaluate("window.__oldDocument = true; document.getElementById('show-plan').click()")
        tab.wait_for("!window.__oldDocument && document.readyState === 'complete'", timeout=60)
        assert tab.evaluate("!!document.getElementById('plan')"), tab.text()
        tab.screenshot("confirm-plan-desktop")
        tab.close()
    finally:
        chromium.close()
        server.stop()


def web_containers(docker_client: docker.DockerClient, project: str) -> set[str]:
    return {c.id for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})}


def test_the_confirm_step_shows_the_workers_plan(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
    docker_client: docker.DockerClient,
) -> None:
    """With v1 live and v2 at the branch head, the deploy confirm page's plan names the service, its
    image old → "would build" and the planner's reason; the rollback to v1 plans it unchanged; asking
    changes no container; confirming then queues the deploy."""
    origin: GitOrigin = make_git_origin("web")
    live = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project)
        app = create_app(load_config(str(path), environment()), connection=redis)
        hook: FlaskClient = app.test_client()
        signed = github_request(github_push("acme/web", after=live), SECRET)
        answer = hook.open("/hooks/github", **signed.client_kwargs())
        assert answer.status_code == 202, answer.json
        burst = subprocess.run(hooksvc_worker(path, "--burst"), env=environment(), capture_output=True, text=True,
                               timeout=DEPLOY_TIMEOUT)
        assert burst.returncode == 0, burst.stderr[-3000:]
        shipped = store.get(store.live("web").deployment_id)  # type: ignore[union-attr]
        assert (shipped.commit_message, shipped.commit_author) == ("release v1", AUTHOR)
        newer = origin.commit("release v2", sample_app_files(tmp_path, "v2"))
        before = web_containers(docker_client, compose_project)

        browser = app.test_client()
        assert browser.post("/login", data={"token": OPERATOR_TOKEN}).status_code == 302
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(hooksvc_worker(path), env=environment(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            ahead = browser.get("/apps/web/deploy?plan=1").get_data(as_text=True)
            same = browser.get(f"/apps/web/rollback?to={live}&plan=1").get_data(as_text=True)
            screenshot_the_plan(app, tmp_path)
        finally:
            stop_process_groups([worker], grace=30)
        assert web_containers(docker_client, compose_project) == before

        assert 'id="plan"' in ahead, (tmp_path / "worker.log").read_text()[-3000:]
        rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td>\s*<td class=\"mono\">([^<]*)</td>", ahead)
        assert [(service, action in ("rolling", "recreate", "unchanged")) for service, action, _ in rows] == [
            ("web", True)]
        assert rows[0][2].endswith("→ would build")
        assert 'id="plan-steps"' in ahead and "No plan" not in ahead
        assert re.search(r"<tr><td>web</td><td>unchanged</td>", same), same
        assert "release v1 <span class=\"muted\">by " + AUTHOR in same  # the commit it rolls back to
        releases = browser.get("/apps/web/rollback").get_data(as_text=True)
        assert '<td class="message">release v1</td>' in releases
        assert f'<td class="wide author">{AUTHOR}</td>' in releases
        assert "config hash and image unchanged" in same

        token = CSRF.search(ahead)
        assert token is not None
        confirmed = browser.post("/apps/web/deploy", data={"csrf_token": token.group(1), "sha": "", "ref": ""})
        assert confirmed.status_code == 303
        queued = store.recent(app="web", limit=1)[0]
        assert (queued.state, queued.operator, queued.ref) == (DeploymentState.QUEUED, "token-1", "refs/heads/main")
        assert f'Of <span class="mono">{newer}</span> (the head of refs/heads/main now)' in ahead

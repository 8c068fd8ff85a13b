"""The dashboard's confirm step with a real worker: a release goes live through a signed push, then the
worker answers the confirm page's plan over Redis, against real git and Docker."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest
from flask import Flask

from hooksvc.deployments import DeploymentState
from hooksvc.web import create_app
from tests.helpers.worker_harness import OPERATOR_TOKEN, Harness
from tests.hooksvc.runtime.test_worker import harness  # noqa: F401 - the fixture this test uses
from tests.hooksvc.web.test_pages import CHROMIUM, DESKTOP, Chromium, LiveServer, Tab

pytestmark = pytest.mark.docker

AUTHOR = "Test Author"  # tests.helpers.git commits as this author
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def screenshot_the_plan(app: Flask, profile: Path) -> None:
    """The deploy's confirm step with its plan, in headless Chromium (when installed), for the docs."""
    if CHROMIUM is None:
        return
    server = LiveServer(app)
    chromium = Chromium(CHROMIUM, profile)
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


def test_the_confirm_step_shows_the_workers_plan(harness: Harness, docker_client: docker.DockerClient) -> None:  # noqa: F811
    """With v1 live and v2 at the branch head, the deploy confirm page's plan names the service, its
    image old → "would build" and the planner's reason; the rollback to v1 plans it unchanged and shows
    v1's subject and author; asking changes no container; confirming then records the deploy."""
    live = harness.commit("v1")
    harness.start_worker()
    shipped = harness.wait(harness.push(live))
    assert shipped.state is DeploymentState.SUCCEEDED
    assert (shipped.commit_message, shipped.commit_author) == ("release v1", AUTHOR)
    newer = harness.commit("v2")
    before = web_containers(docker_client, harness.project)

    app = create_app(harness.config, connection=harness.redis)
    browser = app.test_client()
    assert browser.post("/login", data={"token": OPERATOR_TOKEN}).status_code == 302
    ahead = browser.get("/apps/web/deploy?plan=1").get_data(as_text=True)
    same = browser.get(f"/apps/web/rollback?to={live}&plan=1").get_data(as_text=True)
    screenshot_the_plan(app, harness.tmp / "chromium-profile")
    assert web_containers(docker_client, harness.project) == before

    assert 'id="plan"' in ahead, ahead
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td>\s*<td class=\"mono\">([^<]*)</td>", ahead)
    assert [(service, action in ("rolling", "recreate", "unchanged")) for service, action, _ in rows] == [
        ("web", True)]
    assert rows[0][2].endswith("→ would build")
    assert f'Of <span class="mono">{newer}</span> (the head of refs/heads/main now)' in ahead
    assert 'id="plan-steps"' in ahead and "No plan" not in ahead
    assert re.search(r"<tr><td>web</td><td>unchanged</td>", same), same
    assert "config hash and image unchanged" in same
    assert 'release v1 <span class="muted">by ' + AUTHOR in same  # the commit it rolls back to
    releases = browser.get("/apps/web/rollback").get_data(as_text=True)
    assert '<td class="message">release v1</td>' in releases
    assert f'<td class="wide author">{AUTHOR}</td>' in releases

    token = CSRF.search(ahead)
    assert token is not None
    confirmed = browser.post("/apps/web/deploy", data={"csrf_token": token.group(1), "sha": "", "ref": ""})
    assert confirmed.status_code == 303
    deploy = harness.store.recent(app="web", limit=1)[0]
    assert confirmed.headers["Location"] == f"/deployments/{deploy.id}"
    assert (deploy.operator, deploy.ref) == ("token-1", "refs/heads/main")

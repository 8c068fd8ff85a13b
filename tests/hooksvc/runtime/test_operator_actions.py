"""Locks, freeze windows, redeploys and plans end to end: signed pushes to the real web app → Redis → real
`hooksvc worker` processes → git → compose → live, and the commit statuses at the git host.

Everything is real (Redis, the Docker engine, git, the worker processes) except the git host's
status API, the checking stand-in of fake_git_host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.config import load_config
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.freeze import WEEKDAYS
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from tests.helpers.payloads import github_push, github_request
from tests.helpers.processes import stop_process_groups

pytestmark = pytest.mark.docker

SECRET = "web-webhook-secret"
HOST_TOKEN = "github-api-token"
OPERATOR_TOKEN = "operator-token-000001"
BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
#: A deployment of the sample app takes a few seconds; this bounds a stuck one.
DEPLOY_TIMEOUT = 180
LOCKED = "deploys to web are locked by token-1: database migration"


def write_config(tmp: Path, api_url: str, origin: GitOrigin, project: str, extra: str = "") -> Path:
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
    """) + textwrap.dedent(extra))
    return path


def environment() -> dict[str, str]:
    env = {**os.environ, "WEB_SECRET": SECRET, "HOST_TOKEN": HOST_TOKEN, "HOOKSVC_API_TOKENS": OPERATOR_TOKEN}
    env.pop("REDIS_URL", None)
    return env


def web_client(path: Path, redis: redis_lib.Redis) -> FlaskClient:
    return create_app(load_config(str(path), environment()), connection=redis).test_client()


def push(client: FlaskClient, sha: str) -> dict[str, Any]:
    """A signed push of `sha` to main; the deployment the answer names."""
    resp = client.open("/hooks/github", **github_request(github_push("acme/web", after=sha), SECRET).client_kwargs())
    assert resp.status_code == 202, resp.json
    [dep] = resp.json["deployments"]
    return dep  # type: ignore[no-any-return]


def burst(path: Path) -> None:
    """A `hooksvc worker --burst`: dispatch, run what is queued, send the statuses."""
    result = subprocess.run([sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker", "--burst"],
                            env=environment(), capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]


def deploy_once(client: FlaskClient, path: Path, store: DeploymentStore, sha: str) -> None:
    """Push `sha` and let a burst worker make it live."""
    first = push(client, sha)
    burst(path)
    succeeded(store, first["id"])


def start_worker(path: Path) -> subprocess.Popen[bytes]:
    """A long-running `hooksvc worker` (its log beside the config); stop it with `stop_process_groups`."""
    with (path.parent / "worker.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker"],
                                env=environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def succeeded(store: DeploymentStore, deployment_id: str) -> Deployment:
    done = store.get(deployment_id)
    assert done.state is DeploymentState.SUCCEEDED, "\n".join(store.logs.read(done.id)[0][-30:])
    return done


def descriptions(fake: FakeGitHost, sha: str) -> list[tuple[str, str]]:
    return [(s.state, s.description) for s in fake.accepted if s.sha == sha]


def web_containers(docker_client: docker.DockerClient, project: str) -> set[str]:
    return {c.id for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})}


def project_images(docker_client: docker.DockerClient, project: str) -> set[str]:
    """The project's images and their tags: what compose built for it and its release tags."""
    built = docker_client.images.list(filters={"label": f"com.docker.compose.project={project}"})
    released = docker_client.images.list(name=f"{project}.hooksvc-releases")
    return {f"{i.id} {' '.join(sorted(i.tags))}" for i in [*built, *released]}


def test_a_push_during_a_lock_is_held_then_deployed_at_unlock(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
) -> None:
    """Locked: two pushes are held (the older superseded), the held commit's status is `pending` naming
    who locked and why; unlock queues the newest, a worker deploys it, and its success is posted."""
    origin: GitOrigin = make_git_origin("web")
    older = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    newer = origin.commit("release v2", sample_app_files(tmp_path, "v2"))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project)
        client = web_client(path, redis)
        locked = client.post("/api/apps/web/lock", json={"reason": "database migration"}, headers=BEARER)
        assert locked.status_code == 200, locked.json
        assert locked.json["locked"] is True and locked.json["lock"]["by"] == "token-1"
        first, second = push(client, older), push(client, newer)
        assert (first["state"], second["state"]) == ("held", "held")
        apps = client.get("/api/apps", headers=BEARER).json["apps"]
        assert [a["lock"]["reason"] for a in apps if a["name"] == "web"] == ["database migration"]

        burst(path)  # dispatches and sends the statuses; runs nothing
        assert store.get(first["id"]).state is DeploymentState.SUPERSEDED
        assert store.get(second["id"]).state is DeploymentState.HELD
        assert descriptions(fake, newer) == [("pending", LOCKED)]

        unlocked = client.post("/api/apps/web/unlock", headers=BEARER)
        assert unlocked.status_code == 200, unlocked.json
        assert unlocked.json["locked"] is False and unlocked.json["deployment"]["state"] == "queued"
        burst(path)
        assert succeeded(store, second["id"]).sha == newer
        assert fake.statuses("github", newer, "hooksvc/web") == ["pending", "pending", "pending", "success"]
        assert fake.violations == []


def window_ending_soon(now: datetime) -> tuple[str, datetime]:
    """A weekly UTC window that began ten minutes ago and ends at a whole minute 8-68 s from `now` (the
    push is held within a second; the worker then waits for the end)."""
    end = (now + timedelta(seconds=8)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=11)

    def text(at: datetime) -> str:
        return f"{WEEKDAYS[at.weekday()].title()} {at:%H:%M}"

    return f"{text(start)} - {text(end)}", end


def test_the_newest_held_push_deploys_when_the_window_ends(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
) -> None:
    """A push inside a freeze window is held with the window's end in its status; a running worker
    notices the end by itself and deploys it then, not before."""
    origin: GitOrigin = make_git_origin("web")
    sha = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    window, end = window_ending_soon(datetime.now(UTC))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project, f"freeze = [\"{window}\"]\n")
        client = web_client(path, redis)
        held = push(client, sha)
        assert held["state"] == "held"
        assert f"deploys to web are frozen until {end:%a %Y-%m-%d %H:%M} UTC" in store.get(held["id"]).error
        worker = start_worker(path)
        try:
            deadline = time.monotonic() + (end - datetime.now(UTC)).total_seconds() + DEPLOY_TIMEOUT
            while not store.get(held["id"]).state.is_final and time.monotonic() < deadline:
                time.sleep(0.5)
            done = succeeded(store, held["id"])
            assert done.started_at is not None and done.started_at >= end.timestamp()
            deadline = time.monotonic() + 30  # the success status follows through the outbox
            while fake.statuses("github", sha, "hooksvc/web")[-1:] != ["success"] and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop_process_groups([worker], grace=30)
        states = descriptions(fake, sha)
        assert states[0][0] == "pending" and "frozen until" in states[0][1]
        assert [s for s, _ in states] == ["pending", "pending", "pending", "success"]


def test_redeploy_recreates_an_unchanged_service(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
    docker_client: docker.DockerClient,
) -> None:
    """`POST /api/apps/web/redeploy` deploys the live sha again and replaces its containers although
    nothing changed; the log names the forced replacement."""
    origin: GitOrigin = make_git_origin("web")
    sha = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project)
        client = web_client(path, redis)
        deploy_once(client, path, store, sha)
        before = web_containers(docker_client, compose_project)
        assert before

        resp = client.post("/api/apps/web/redeploy", headers=BEARER)
        assert resp.status_code == 202, resp.json
        assert (resp.json["trigger"], resp.json["sha"]) == ("redeploy", sha)
        burst(path)
        again = succeeded(store, resp.json["id"])
        after = web_containers(docker_client, compose_project)
        assert after and not (after & before)
        assert any("unchanged, replaced by a redeploy" in line for line in store.logs.read(again.id)[0])


def test_plan_shows_the_planners_actions_without_changing_anything(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
    docker_client: docker.DockerClient,
) -> None:
    """A worker answers `GET /api/apps/web/plan`: the live sha is unchanged with the same image; a new sha
    would build its image and names what the planner decided; no container or image changes meanwhile."""
    origin: GitOrigin = make_git_origin("web")
    live = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project)
        client = web_client(path, redis)
        deploy_once(client, path, store, live)
        newer = origin.commit("release v2", sample_app_files(tmp_path, "v2"))
        before = web_containers(docker_client, compose_project)
        images_before = project_images(docker_client, compose_project)
        worker = start_worker(path)
        try:
            same = client.get(f"/api/apps/web/plan?sha={live}", headers=BEARER)
            assert same.status_code == 200, same.json
            [web] = same.json["services"]
            assert (web["action"], web["reason"]) == ("unchanged", "config hash and image unchanged")
            assert web["image"]["old"] == web["image"]["new"] is not None
            ahead = client.get("/api/apps/web/plan", headers=BEARER)  # the branch head: v2
            assert ahead.status_code == 200, ahead.json
            assert (ahead.json["sha"], ahead.json["live_sha"]) == (newer, live)
            [web] = ahead.json["services"]
            assert web["image"] == {"old": same.json["services"][0]["image"]["old"], "new": "would build"}
            assert web["action"] in ("rolling", "recreate", "unchanged") and web["reason"]
            unknown = client.get(f"/api/apps/web/plan?sha={'0' * 40}", headers=BEARER)
            assert unknown.status_code == 404 and "0000000" in unknown.json["error"]
        finally:
            stop_process_groups([worker], grace=30)
        assert web_containers(docker_client, compose_project) == before
        assert project_images(docker_client, compose_project) == images_before  # nothing was built

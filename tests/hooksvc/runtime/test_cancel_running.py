"""Cancelling running deployments end to end: the API → Redis → a real `hooksvc worker` that is building,
waiting at the health gate, or already past the switch, with real compose, git and Docker.

One app and one worker serve every case in turn (each deployment takes seconds): v1 goes live, v2 is
cancelled while its slow build runs, v3 while its never-healthy container waits at the gate (under
load through a health-aware proxy), v5 while its `pre_deploy` step runs, and v4's cancel comes too
late, during its `post_deploy` step.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc import audit
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.store import DeploymentStore
from tests.helpers.docker import HealthyProxy, LoadLoop, get_text, wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from tests.helpers.processes import stop_process_groups
from tests.hooksvc.runtime.test_operator_actions import (
    BEARER,
    DEPLOY_TIMEOUT,
    HOST_TOKEN,
    descriptions,
    project_images,
    push,
    start_worker,
    web_client,
    web_containers,
    write_config,
)

pytestmark = pytest.mark.docker

#: The build step that keeps v2 building, and the `pre_deploy` step of a release holding /www/slow-step:
#: their odd lengths name their processes on the machine.
SLOW_BUILD_SECONDS = 317
SLOW_STEP_SECONDS = 293
RELEASE_STEPS = (f'pre_deploy = [{{ service = "web", command = ["sh", "-c", '
                 f'"test ! -e /www/slow-step || sleep {SLOW_STEP_SECONDS}"] }}]\n'
                 'post_deploy = [{ service = "web", command = ["sh", "-c", "sleep 3"] }]\n')
#: How soon a cancelled deployment must end: the watcher polls every 0.25 s, then a kill or a gate poll.
ENDS_WITHIN_SECONDS = 10.0
OPERATOR = "token-1"


def slow_build_files(tmp: Path) -> dict[str, str | bytes | None]:
    """The sample app at v2 with a build step that sleeps for minutes."""
    files = sample_app_files(tmp, "v2")
    dockerfile = files["Dockerfile"]
    assert isinstance(dockerfile, bytes)
    first, rest = dockerfile.decode().split("\n", 1)
    files["Dockerfile"] = f"{first}\nRUN sleep {SLOW_BUILD_SECONDS}\n{rest}".encode()
    return files


def sleeping(seconds: int) -> list[str]:
    """The machine's processes running `sleep seconds` (a build's or a container's process shows on the host)."""
    found = subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True, text=True)
    return found.stdout.split()


def wait_final(store: DeploymentStore, deployment_id: str, timeout: float = DEPLOY_TIMEOUT) -> Deployment:
    assert wait_for(lambda: store.get(deployment_id).state.is_final, timeout, 0.05), log_of(store, deployment_id)
    return store.get(deployment_id)


def wait_for_line(store: DeploymentStore, deployment_id: str, text: str) -> None:
    assert wait_for(lambda: any(text in line for line in store.logs.read(deployment_id)[0]), DEPLOY_TIMEOUT, 0.05), \
        log_of(store, deployment_id)


def log_of(store: DeploymentStore, deployment_id: str) -> str:
    return "\n".join(store.logs.read(deployment_id)[0][-40:])


def cancel(client: FlaskClient, deployment_id: str) -> tuple[float, dict[str, Any]]:
    """Ask to cancel the running deployment through the API: when, and the 202's deployment."""
    resp = client.post(f"/api/deployments/{deployment_id}/cancel", headers=BEARER)
    assert resp.status_code == 202, resp.json
    assert resp.json is not None and resp.json["state"] == "running"
    return time.monotonic(), resp.json


def served_tag(docker_client: docker.DockerClient, project: str) -> tuple[str, str]:
    """(the image the live web container runs, the image compose's tag of web names)."""
    [live] = docker_client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                              "com.docker.compose.service=web"]})
    tagged = docker_client.images.get(live.attrs["Config"]["Image"]).id
    return live.image.id, tagged


def test_cancel_while_building_at_the_gate_and_too_late(
    tmp_path: Path, make_git_origin: Any, compose_project: str, base_image: str, redis: redis_lib.Redis,
    docker_client: docker.DockerClient,
) -> None:
    """A cancel while building kills the build and leaves no container or image behind; one at the health gate
    removes the new container while the old one serves every request; one during `pre_deploy` kills the
    step and removes its container; one during `post_deploy` comes too late and the deployment succeeds; a
    finished deployment's cancel is 409. Each is audited and logged."""
    origin: GitOrigin = make_git_origin("web")
    v1 = origin.commit("release v1", sample_app_files(tmp_path, "v1"))
    store = DeploymentStore(redis)
    with FakeGitHost(tokens={"github": HOST_TOKEN}) as fake:
        path = write_config(tmp_path, fake.url, origin, compose_project, RELEASE_STEPS)
        client = web_client(path, redis)
        worker = start_worker(path)
        try:
            first = push(client, v1)
            assert wait_final(store, first["id"]).state is DeploymentState.SUCCEEDED, log_of(store, first["id"])
            containers, images = web_containers(docker_client, compose_project), project_images(
                docker_client, compose_project)

            with HealthyProxy(docker_client, compose_project, "web") as proxy:
                # v2: cancelled while `RUN sleep 317` builds.
                v2 = origin.commit("release v2", slow_build_files(tmp_path))
                building = push(client, v2)
                assert wait_for(lambda: bool(sleeping(SLOW_BUILD_SECONDS)), DEPLOY_TIMEOUT, 0.1), \
                    log_of(store, building["id"])
                asked, answer = cancel(client, building["id"])
                assert answer["cancel_requested_by"] == OPERATOR
                done = wait_final(store, building["id"])
                took = time.monotonic() - asked
                assert done.state is DeploymentState.CANCELLED, log_of(store, done.id)
                assert done.error == f"cancelled by {OPERATOR} while building; {v1[:12]} is still live"
                assert took < ENDS_WITHIN_SECONDS, f"ended {took:.1f}s after the cancel"
                assert wait_for(lambda: not sleeping(SLOW_BUILD_SECONDS), 15, 0.2), "the build step still runs"
                assert web_containers(docker_client, compose_project) == containers
                assert project_images(docker_client, compose_project) == images
                assert get_text(f"{proxy.url}/version.txt") == (200, "v1")

                # v3: its container never gets healthy (health_timeout 40 s); cancelled at the gate, under load.
                with LoadLoop(f"{proxy.url}/version.txt", rate=20, max_seconds=DEPLOY_TIMEOUT) as load:
                    gated = push(client, origin.commit("release v3", sample_app_files(tmp_path, "v3", healthy=False)))
                    wait_for_line(store, gated["id"], "web: waiting for 1 container(s) to be healthy")
                    time.sleep(1.0)
                    asked, _ = cancel(client, gated["id"])
                    done = wait_final(store, gated["id"])
                    took_gate = time.monotonic() - asked
                    time.sleep(1.0)  # the proxy sees the engine as it is after the rollback
                    report = load.stop()
            assert done.state is DeploymentState.CANCELLED, log_of(store, done.id)
            assert done.error == f"cancelled by {OPERATOR} while waiting for web to be healthy; {v1[:12]} is still live"
            assert took_gate < ENDS_WITHIN_SECONDS, f"ended {took_gate:.1f}s after the cancel"
            assert report.failed == 0, report.failures[:5]
            assert set(report.versions) == {"v1"} and report.ok > 20
            assert web_containers(docker_client, compose_project) == containers
            runs, tagged = served_tag(docker_client, compose_project)
            assert runs == tagged, "compose's image tag of web was not put back on the live release"
            assert any("removing 1 new container(s); the old ones keep serving" in line
                       for line in store.logs.read(done.id)[0])

            # v5: its pre_deploy step sleeps; cancelled while it runs, the step's container goes with it.
            stepping = push(client, origin.commit("release v5", {**sample_app_files(tmp_path, "v5"),
                                                                 "www/slow-step": "1\n"}))
            assert wait_for(lambda: bool(sleeping(SLOW_STEP_SECONDS)), DEPLOY_TIMEOUT, 0.1), \
                log_of(store, stepping["id"])
            cancel(client, stepping["id"])
            done = wait_final(store, stepping["id"])
            assert done.state is DeploymentState.CANCELLED, log_of(store, done.id)
            assert done.error == f"cancelled by {OPERATOR} while running pre_deploy; {v1[:12]} is still live"
            assert wait_for(lambda: not sleeping(SLOW_STEP_SECONDS), 15, 0.2), "the pre_deploy step still runs"
            assert docker_client.containers.list(all=True, filters={"name": f"{compose_project}-pre-deploy-"}) == []
            assert web_containers(docker_client, compose_project) == containers

            # v4: healthy; the cancel arrives while post_deploy (sleep 3) runs, after the switch.
            v4 = origin.commit("release v4", {**sample_app_files(tmp_path, "v4"), "www/slow-step": None})
            late = push(client, v4)
            wait_for_line(store, late["id"], "release step post_deploy 1/1 on web: $")
            cancel(client, late["id"])
            done = wait_final(store, late["id"])
            assert done.state is DeploymentState.SUCCEEDED, log_of(store, done.id)
            assert any(line.startswith(f"cancel requested by {OPERATOR} came too late: the new containers had passed")
                       for line in store.logs.read(done.id)[0]), log_of(store, done.id)
            finished = client.post(f"/api/deployments/{late['id']}/cancel", headers=BEARER)
            assert finished.status_code == 409 and "is succeeded" in finished.json["error"]
            # The worker's outbox sender tells the git host; v2's status says who cancelled it and what serves.
            assert wait_for(lambda: descriptions(fake, v2)[-1:] == [
                ("error", f"Not deployed: cancelled by {OPERATOR} while building; {v1[:12]} is still live")], 30)
        finally:
            stop_process_groups([worker], grace=30)

        cancels = [(e.deployment, e.result, e.address) for e in reversed(audit.recent(redis))
                   if e.action == audit.CANCEL]
        assert cancels == [
            (building["id"], audit.REQUESTED, "127.0.0.1"), (building["id"], audit.OK, "worker"),
            (gated["id"], audit.REQUESTED, "127.0.0.1"), (gated["id"], audit.OK, "worker"),
            (stepping["id"], audit.REQUESTED, "127.0.0.1"), (stepping["id"], audit.OK, "worker"),
            (late["id"], audit.REQUESTED, "127.0.0.1"), (late["id"], audit.FAILED, "worker"),
            (late["id"], audit.FAILED, "127.0.0.1"),
        ]
        print(f"cancel while building ended in {took:.2f}s, at the gate in {took_gate:.2f}s; "
              f"{report.ok} requests served, {report.failed} failed")

"""Apps on another Docker engine (`docker_host`), through real `hooksvc worker` processes.

The second engine is a private dockerd of the test session (tests/fixtures/engines.py), reached
on its unix socket or on 127.0.0.1 over TCP, as a remote engine is reached over ssh:// or tcp://.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import PROJECT_LABEL, HealthyProxy, LoadLoop, get_text, wait_for
from tests.helpers.engines import DockerDaemon
from tests.helpers.fleet import DEPLOY_TIMEOUT, open_fleet
from tests.helpers.git import GitOrigin

pytestmark = pytest.mark.docker


def projects_on(client: docker.DockerClient) -> set[str]:
    return {c.labels.get(PROJECT_LABEL, "") for c in client.containers.list(all=True)}


def published_url(client: docker.DockerClient, project: str) -> str:
    """The one running container of `project`, as http://ADDRESS:PORT (its published port 80)."""
    (container,) = client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})
    (binding,) = container.attrs["NetworkSettings"]["Ports"]["80/tcp"]
    return f"http://{binding['HostIp']}:{binding['HostPort']}"


def serves(url: str, version: str) -> bool:
    return get_text(f"{url}/version.txt") == (200, version)


class TestRemoteEngine:
    def test_rolling_app_on_second_engine_while_another_deploys_on_the_first(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
        docker_client: docker.DockerClient, second_engine: DockerDaemon, base_image: str,
    ) -> None:
        """Two apps deploy at once, one per engine; each engine holds only its own app; the far one is health-gated."""
        far_client = second_engine.client()
        engines = {"near": (None, docker_client), "far": (second_engine.url, far_client)}
        with open_fleet(tmp_path, make_git_origin, redis, TEST_REDIS_URL, engines,
                        addresses={"far": second_engine.address}) as fleet:
            near, far = fleet.apps["near"], fleet.apps["far"]
            fleet.start_worker()
            fleet.start_worker()
            fleet.wait_until_idle()
            first = {name: fleet.commit(name, "v1") for name in ("near", "far")}
            for name, sha in first.items():
                done = fleet.wait(fleet.push(name, sha))
                assert done.state is DeploymentState.SUCCEEDED, done.error

            second = {name: fleet.commit(name, "v2") for name in ("near", "far")}
            with HealthyProxy(far_client, far.project, "web") as far_proxy, \
                    HealthyProxy(docker_client, near.project, "web") as near_proxy, \
                    LoadLoop(f"{far_proxy.url}/version.txt", rate=20, max_seconds=DEPLOY_TIMEOUT) as far_load, \
                    LoadLoop(f"{near_proxy.url}/version.txt", rate=20, max_seconds=DEPLOY_TIMEOUT) as near_load:
                ids = {name: fleet.push(name, sha, before=first[name]) for name, sha in second.items()}
                done_near, done_far = fleet.wait(ids["near"]), fleet.wait(ids["far"])
                assert wait_for(lambda: serves(far_proxy.url, "v2") and serves(near_proxy.url, "v2"), 20)
                time.sleep(1)
            far_report, near_report = far_load.stop(), near_load.stop()
            assert done_far.state is DeploymentState.SUCCEEDED, done_far.error
            assert done_near.state is DeploymentState.SUCCEEDED, done_near.error
            assert far_report.failed == 0, far_report.failures[:5]
            assert near_report.failed == 0, near_report.failures[:5]
            assert far_report.versions["v1"] > 0 and far_report.versions["v2"] > 0
            # The two rollouts ran at the same time, one on each engine.
            assert done_far.started_at is not None and done_near.started_at is not None
            assert done_far.finished_at is not None and done_near.finished_at is not None
            assert max(done_far.started_at, done_near.started_at) < min(done_far.finished_at, done_near.finished_at)

            far_log = fleet.log(ids["far"])
            assert any(f"engine {second_engine.url}" in line for line in far_log)
            assert any("web: rolling update" in line for line in far_log)
            assert any("web: healthy after" in line for line in far_log)
            # Each engine holds its own app only: compose, the SDK and the CLI all went to the right one.
            assert far.project in projects_on(far_client) and far.project not in projects_on(docker_client)
            assert near.project in projects_on(docker_client) and near.project not in projects_on(far_client)
            far_label = {"label": f"{PROJECT_LABEL}={far.project}"}
            assert len(far_client.containers.list(all=True, filters=far_label)) == 1
            # compose v2 names a built image `<project>-<service>`, v1 `<project>_<service>`.
            built = [f"{far.project}-web", f"{far.project}_web"]
            assert any(far_client.images.list(name=name) for name in built)
            assert not any(docker_client.images.list(name=name) for name in built)

            # The health gate holds on the far engine as on the near one: an unhealthy release never serves.
            broken = fleet.commit("far", "v3", healthy=False)
            failed = fleet.wait(fleet.push("far", broken, before=second["far"]))
            assert failed.state is DeploymentState.FAILED and "unhealthy" in failed.error, failed.error
            assert serves(published_url(far_client, far.project), "v2")
        far_client.close()


class TestEngineRestart:
    def test_engine_restarted_mid_rollout_ends_error_and_the_old_release_comes_back(
        self, tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
        second_engine: DockerDaemon, base_image: str,
    ) -> None:
        """The engine restarts during the health gate (reached over tcp://): the deployment ends `error`
        naming the engine, the old release serves again once the engine is back, the next deploy succeeds."""
        client = second_engine.client()
        engines = {"far": (second_engine.tcp_url, client)}
        with open_fleet(tmp_path, make_git_origin, redis, TEST_REDIS_URL, engines,
                        addresses={"far": second_engine.address}) as fleet:
            project = fleet.apps["far"].project
            fleet.start_worker()
            v1 = fleet.commit("far", "v1", restart="unless-stopped")
            assert fleet.wait(fleet.push("far", v1)).state is DeploymentState.SUCCEEDED
            assert serves(published_url(client, project), "v1")

            # v2 boots slowly, so the rollout is surely in its health gate when the engine goes.
            v2 = fleet.commit("far", "v2", restart="unless-stopped", start_period="60s", boot_seconds=20)
            d2 = fleet.push("far", v2, before=v1)
            fleet.wait_for_log(d2, "to be healthy")
            second_engine.restart()
            ended = fleet.wait(d2, timeout=DEPLOY_TIMEOUT)
            assert ended.state is DeploymentState.ERROR, "\n".join(fleet.log(d2))
            assert "Docker engine" in ended.error and second_engine.tcp_url in ended.error, ended.error
            assert "1 new container(s) were removed and the live release runs again" in ended.error, ended.error
            # Once the engine is back, only the old release runs: its container restarted with the engine
            # (restart policy), the new one is gone.
            assert wait_for(lambda: len(client.containers.list(
                all=True, filters={"label": f"{PROJECT_LABEL}={project}"})) == 1, 30)
            assert wait_for(lambda: serves(published_url(client, project), "v1"), 30)
            live = fleet.store.live("far")
            assert live is not None and live.sha == v1

            v3 = fleet.commit("far", "v3", restart="unless-stopped")
            d3 = fleet.wait(fleet.push("far", v3, before=v2))
            assert d3.state is DeploymentState.SUCCEEDED, d3.error
            assert serves(published_url(client, project), "v3")
        client.close()

"""Strategy swarm on a real single-node Swarm, through the deploy job: releases under load behind a
proxy task, a real registry, Swarm's own rollback of an unhealthy release, and releases that change
nothing (a failed build, a stack file that cannot work)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.config import Config
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.live_services import read_services
from hooksvc.operations import queue_rollback
from hooksvc.store import DeploymentStore, open_store
from tests.fixtures.swarm import stack_name_for
from tests.helpers.config import TEST_REDIS_URL, make_config
from tests.helpers.docker import LoadLoop, get_text, wait_for
from tests.helpers.git import GitOrigin
from tests.helpers.redis_server import free_port
from tests.helpers.swarm import PROXY_PATH, RegistryServer, remove_stack, swarm_app_files
from workers.jobs import execute
from workers.stack_file import release_tag

pytestmark = pytest.mark.docker

APP = "stackapp"
#: Load on the proxy while releases roll out, as in the rolling strategy's tests.
LOAD_RATE = 20.0


def swarm_config(root: Path, origin: GitOrigin, stack: str, registry: str | None = None,
                 health_timeout: str = "60s") -> Config:
    registry_line = f'registry = "{registry}"' if registry else ""
    return make_config(root, extra=f"""
        [apps.{APP}]
        host = "github"
        repo = "acme/{APP}"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{stack}"
        strategy = "swarm"
        health_timeout = "{health_timeout}"
        {registry_line}
    """)


def deploy(config: Config, redis: redis_lib.Redis, sha: str, trigger: Trigger = Trigger.PUSH) -> Deployment:
    """Queue a deployment of `sha` and run it in-process, as a worker's job would; return its final record."""
    store = open_store(config, redis)
    new = NewDeployment(APP, sha, "refs/heads/main", trigger, forced=trigger is not Trigger.PUSH)
    dep = store.intake.submit([new]).deployments[0]
    execute(config, store, redis, dep.id)
    return store.get(dep.id)


def log_of(redis: redis_lib.Redis, dep: Deployment) -> str:
    return "\n".join(DeploymentStore(redis).logs.read(dep.id)[0])


def service_image(client: docker.DockerClient, stack: str, service: str = "web") -> str:
    return str(client.api.inspect_service(f"{stack}_{service}")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def deploy_good(config: Config, redis: redis_lib.Redis, origin: GitOrigin, version: str,
                files: dict[str, str | None], url: str) -> Deployment:
    """Commit `files` as `version` and deploy it: its record once it succeeded and `url` serves `version`."""
    dep = deploy(config, redis, origin.commit(version, files))
    assert dep.state is DeploymentState.SUCCEEDED, log_of(redis, dep)
    assert wait_for(lambda: get_text(url) == (200, version), 30), get_text(url)
    return dep


class TestReleasesUnderLoad:
    def test_v1_to_v2_and_a_rollback_drop_no_request_and_run_images_from_the_registry(
        self, tmp_path: Path, git_origin: GitOrigin, redis: redis_lib.Redis, docker_client: docker.DockerClient,
        swarm: int, registry: RegistryServer, swarm_proxy_image: str, stack_name: str,
    ) -> None:
        """Under 20 requests/s through a proxy task that finds `web`'s tasks by Swarm DNS, v1 → v2 and a
        rollback to v1 fail no request; both releases' tags are in the registry, the stack runs them by
        the registry's name, and the rollback runs v1's images again without building."""
        port = free_port()
        url = f"http://127.0.0.1:{port}{PROXY_PATH}"
        image = f"{stack_name}/web"
        config = swarm_config(tmp_path, git_origin, stack_name, registry.address)
        first = deploy_good(config, redis, git_origin, "v1", swarm_app_files("v1", proxy_port=port, image=image), url)
        v1 = first.sha

        with LoadLoop(url, rate=LOAD_RATE, max_seconds=180) as load:
            time.sleep(2)
            second = deploy_good(config, redis, git_origin, "v2", swarm_app_files("v2", proxy_port=port, image=image),
                                 url)
            v2 = second.sha
            rollback = queue_rollback(open_store(config, redis), config.apps[APP], "")
            execute(config, open_store(config, redis), redis, rollback.id)
            back = DeploymentStore(redis).get(rollback.id)
            assert back.state is DeploymentState.SUCCEEDED, log_of(redis, back)
            assert get_text(url) == (200, "v1")
            time.sleep(2)
        report = load.stop()
        print(f"\nswarm v1 -> v2 -> rollback under load: {report.ok} ok, {report.failed} failed "
              f"in {report.seconds:.1f}s; versions {dict(report.versions)}")
        assert report.failed == 0, report.failures[:10]
        assert report.versions["v1"] > 0 and report.versions["v2"] > 0

        tags = {release_tag(v1, first.id), release_tag(v2, second.id)}
        assert tags <= set(registry.tags(image)), registry.tags(image)
        assert service_image(docker_client, stack_name).startswith(
            f"{registry.address}/{image}:{release_tag(v1, first.id)}")
        assert "without building" in log_of(redis, back)
        # What `hooksvc status` and the dashboard show: the stack's services and what each runs.
        running = read_services(redis, APP)
        assert running is not None and running.deployment_id == back.id
        runs = {s.name: s.runs for s in running.services}
        assert set(runs) == {"web", "proxy"}, runs
        assert runs["web"].startswith(f"{registry.address}/{image}:{release_tag(v1, first.id)}"), runs
        assert release_tag(v1, back.id) not in registry.tags(image)


@dataclass(frozen=True)
class LiveStack:
    """A stack whose v1 is live, for tests of releases that must not replace it."""

    root: Path
    origin: GitOrigin
    stack: str
    port: int
    v1: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PROXY_PATH}"

    def config(self, health_timeout: str = "60s") -> Config:
        return swarm_config(self.root, self.origin, self.stack, health_timeout=health_timeout)


@pytest.fixture(scope="class")
def live_v1(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, swarm: int,
            swarm_proxy_image: str) -> Iterator[LiveStack]:
    """v1 of a stack app (no registry: one node), deployed once for the class; removed after it."""
    root = tmp_path_factory.mktemp("swarm-live")
    live = LiveStack(root, GitOrigin(root / "origin.git"), stack_name_for("failing"), free_port(), "")
    v1 = live.origin.commit("v1", swarm_app_files("v1", proxy_port=live.port, api=True))
    live = LiveStack(live.root, live.origin, live.stack, live.port, v1)
    connection = redis_lib.Redis.from_url(TEST_REDIS_URL)
    try:
        first = deploy(live.config(), connection, v1)
        assert first.state is DeploymentState.SUCCEEDED, log_of(connection, first)
        assert wait_for(lambda: get_text(live.url) == (200, "v1"), 30), get_text(live.url)
        yield live
    finally:
        connection.close()
        remove_stack(docker_client, live.stack)


class TestReleasesThatFail:
    def test_an_unhealthy_release_is_rolled_back_by_swarm_and_ends_failed(
        self, live_v1: LiveStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """A release whose tasks never become healthy is rolled back by Swarm itself; the deployment ends
        `failed` naming the service and the task's error, v1 serves throughout and after. Nothing of the
        release stays: a service it updated successfully is rolled back, one it added is removed."""
        before = {name: service_image(docker_client, live_v1.stack, name) for name in ("web", "api")}
        v2 = live_v1.origin.commit("v2 unhealthy", swarm_app_files(
            "v2", proxy_port=live_v1.port, healthy=False, api=True, sidecar=True))
        with LoadLoop(live_v1.url, rate=LOAD_RATE, max_seconds=150) as load:
            dep = deploy(live_v1.config(), redis, v2)
            time.sleep(1)
        report = load.stop()
        print(f"\nswarm unhealthy release under load: {report.ok} ok, {report.failed} failed "
              f"in {report.seconds:.1f}s; versions {dict(report.versions)}")
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "service web: its new tasks failed and Swarm rolled it back" in dep.error
        assert "unhealthy" in dep.error
        assert report.failed == 0, report.failures[:10]
        assert set(report.versions) == {"v1"}
        assert {name: service_image(docker_client, live_v1.stack, name) for name in ("web", "api")} == before
        assert not docker_client.services.list(filters={"name": f"{live_v1.stack}_sidecar"})
        log = log_of(redis, dep)
        assert "rolled back: api" in log and "sidecar: removing the service" in log
        assert get_text(live_v1.url) == (200, "v1")

    def test_a_release_still_starting_after_the_health_timeout_is_rolled_back_by_hooksvc(
        self, live_v1: LiveStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """A task Swarm keeps `starting` (its healthcheck's start period is long) is not waited for beyond
        the app's health_timeout: hooksvc rolls the service back itself and the deployment ends `failed`."""
        before = service_image(docker_client, live_v1.stack)
        v5 = live_v1.origin.commit("v5 slow", swarm_app_files(
            "v5", proxy_port=live_v1.port, healthy=False, api=True, start_period="300s"))
        dep = deploy(live_v1.config(health_timeout="5s"), redis, v5)
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "service web did not converge within 7s (updating)" in dep.error
        assert "rolled back: api, web" in log_of(redis, dep), log_of(redis, dep)
        assert service_image(docker_client, live_v1.stack) == before
        assert get_text(live_v1.url) == (200, "v1")

    def test_an_unbuildable_release_changes_nothing(
        self, live_v1: LiveStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """A release whose build fails ends `failed` before the stack is touched: same service versions."""
        versions = {s.name: s.version for s in docker_client.services.list(
            filters={"label": f"com.docker.stack.namespace={live_v1.stack}"})}
        v3 = live_v1.origin.commit("v3 unbuildable", swarm_app_files("v3", proxy_port=live_v1.port,
                                                                    build_fails=True))
        dep = deploy(live_v1.config(), redis, v3)
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "compose build failed" in dep.error
        after = {s.name: s.version for s in docker_client.services.list(
            filters={"label": f"com.docker.stack.namespace={live_v1.stack}"})}
        assert after == versions
        assert get_text(live_v1.url) == (200, "v1")

    def test_a_stack_file_that_cannot_work_is_refused_before_anything_is_built(
        self, live_v1: LiveStack, redis: redis_lib.Redis, docker_client: docker.DockerClient,
    ) -> None:
        """A proxy publishing a host-mode port with start-first updates on one node is refused with the fix,
        before the build: no image of the release exists and the stack is untouched."""
        versions = {s.name: s.version for s in docker_client.services.list(
            filters={"label": f"com.docker.stack.namespace={live_v1.stack}"})}
        v4 = live_v1.origin.commit("v4 start-first proxy", swarm_app_files(
            "v4", proxy_port=live_v1.port, proxy_order="start-first"))
        dep = deploy(live_v1.config(), redis, v4)
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert f"service proxy: port {live_v1.port} is published in host mode" in dep.error
        assert "Set deploy.update_config.order: stop-first for proxy" in dep.error
        assert "building images" not in log_of(redis, dep)
        after = {s.name: s.version for s in docker_client.services.list(
            filters={"label": f"com.docker.stack.namespace={live_v1.stack}"})}
        assert after == versions


def running_tasks(client: docker.DockerClient, stack: str, service: str) -> set[str]:
    return {t["ID"] for t in client.api.tasks(filters={"service": f"{stack}_{service}", "desired-state": "running"})}


class TestServicesAReleaseDoesNotChange:
    def test_a_built_stop_first_proxy_whose_image_is_unchanged_keeps_its_task_through_good_and_failed_releases(
        self, tmp_path: Path, git_origin: GitOrigin, redis: redis_lib.Redis, docker_client: docker.DockerClient,
        swarm: int, swarm_proxy_image: str, stack_name: str,
    ) -> None:
        """A built proxy (stop-first, host-mode port) whose build is the same in every release keeps its live
        tag and its task through a good, an unhealthy and an unbuildable release: no failed request."""
        port = free_port()
        url = f"http://127.0.0.1:{port}{PROXY_PATH}"
        config = swarm_config(tmp_path, git_origin, stack_name)
        deploy_good(config, redis, git_origin, "v1", swarm_app_files("v1", proxy_port=port, proxy_built=True), url)
        proxy_image = service_image(docker_client, stack_name, "proxy")
        proxy_tasks = running_tasks(docker_client, stack_name, "proxy")

        with LoadLoop(url, rate=LOAD_RATE, max_seconds=240) as load:
            time.sleep(1)
            good = deploy_good(config, redis, git_origin, "v2",
                               swarm_app_files("v2", proxy_port=port, proxy_built=True), url)
            v3 = git_origin.commit("v3 unhealthy", swarm_app_files("v3", proxy_port=port, proxy_built=True,
                                                                   healthy=False))
            broken = deploy(config, redis, v3)
            assert broken.state is DeploymentState.FAILED, log_of(redis, broken)
            v4 = git_origin.commit("v4 unbuildable", swarm_app_files("v4", proxy_port=port, proxy_built=True,
                                                                     build_fails=True))
            unbuildable = deploy(config, redis, v4)
            assert unbuildable.state is DeploymentState.FAILED, log_of(redis, unbuildable)
            time.sleep(1)
        report = load.stop()
        print(f"\nswarm good, unhealthy, unbuildable releases with an unchanged built proxy: {report.ok} ok, "
              f"{report.failed} failed in {report.seconds:.1f}s; versions {dict(report.versions)}")
        assert report.failed == 0, report.failures[:10]
        assert "proxy: unchanged" in log_of(redis, good)
        assert service_image(docker_client, stack_name, "proxy") == proxy_image
        assert running_tasks(docker_client, stack_name, "proxy") == proxy_tasks
        assert get_text(url) == (200, "v2")


class TestFailuresPutTheStackBack:
    def test_a_failed_release_creates_again_the_services_its_prune_removed(
        self, tmp_path: Path, git_origin: GitOrigin, redis: redis_lib.Redis, docker_client: docker.DockerClient,
        swarm: int, swarm_proxy_image: str, stack_name: str,
    ) -> None:
        """A release that drops a service and then fails to converge ends `failed`, and the service that
        `docker stack deploy --prune` removed runs again as it was."""
        port = free_port()
        config = swarm_config(tmp_path, git_origin, stack_name)
        deploy_good(config, redis, git_origin, "v1", swarm_app_files("v1", proxy_port=port, sidecar=True),
                  f"http://127.0.0.1:{port}{PROXY_PATH}")
        sidecar = docker_client.api.inspect_service(f"{stack_name}_sidecar")["Spec"]
        v2 = git_origin.commit("v2 unhealthy, no sidecar", swarm_app_files("v2", proxy_port=port, healthy=False))
        dep = deploy(config, redis, v2)
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "sidecar: creating again the service this deployment's --prune removed" in log_of(redis, dep)
        assert docker_client.api.inspect_service(f"{stack_name}_sidecar")["Spec"] == sidecar
        assert wait_for(lambda: len(running_tasks(docker_client, stack_name, "sidecar")) == 1, 30)

    def test_an_update_swarm_completes_past_a_failed_task_is_not_reported_as_success(
        self, tmp_path: Path, git_origin: GitOrigin, redis: redis_lib.Redis, docker_client: docker.DockerClient,
        swarm: int, swarm_proxy_image: str, stack_name: str,
    ) -> None:
        """With `failure_action: continue` Swarm completes the update of an unhealthy release; hooksvc ends
        the deployment `failed`, says why, and the previous release serves again."""
        port = free_port()
        url = f"http://127.0.0.1:{port}{PROXY_PATH}"
        config = swarm_config(tmp_path, git_origin, stack_name)
        deploy_good(config, redis, git_origin, "v1",
                    swarm_app_files("v1", proxy_port=port, failure_action="continue"), url)
        before = service_image(docker_client, stack_name)
        v2 = git_origin.commit("v2 unhealthy", swarm_app_files("v2", proxy_port=port, healthy=False,
                                                               failure_action="continue"))
        dep = deploy(config, redis, v2)
        assert dep.state is DeploymentState.FAILED, log_of(redis, dep)
        assert "failure_action: continue" in dep.error, dep.error
        assert wait_for(lambda: service_image(docker_client, stack_name) == before, 60)
        assert wait_for(lambda: get_text(url) == (200, "v1"), 30), get_text(url)

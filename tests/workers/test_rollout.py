"""Rollouts against the real Docker engine, once with compose v1 and once with v2.

A health-aware proxy (as Traefik's Docker provider routes) stands in front of the sample app, and
a bounded load loop counts every request that fails while releases roll in.
"""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.config import AppConfig, Secret
from hooksvc.errors import ComposeError, HealthCheckFailed
from tests.helpers.docker import (
    HealthyProxy,
    LoadLoop,
    get_text,
    wait_for,
    write_django_like_app,
    write_sample_app,
)
from workers.compose import ComposeProject, detect_compose
from workers.docker_engine import DockerEngine
from workers.rollout.context import RolloutResult
from workers.rollout.live_record import LiveRecord, record_path
from workers.strategies import compose_rollout

pytestmark = pytest.mark.docker

#: 25 requests/s: the rate the measured zero-failure rollouts were checked at, light for 2 cores.
LOAD_RATE = 25.0
#: Upper bound on one load loop; the release sequence below takes well under a minute.
LOAD_MAX_SECONDS = 120.0


def make_app(project: str, **overrides: object) -> AppConfig:
    """An AppConfig for a test project; the git fields are never used by a rollout."""
    fields: dict[str, object] = {
        "name": project, "host": "github", "host_kind": "github", "repo": f"acme/{project}",
        "clone_url": "/nonexistent", "secret": Secret("unused"), "project": project,
        "health_timeout": 40.0, "start_grace": 1.0,
    }
    fields.update(overrides)
    return AppConfig(**fields)  # type: ignore[arg-type]


class Deployer:
    """Rolls releases of one app out from numbered release directories, keeping the whole log."""

    def __init__(self, app: AppConfig, root: Path) -> None:
        self.app = app
        self.root = root
        self.lines: list[str] = []

    def release(self, name: str) -> Path:
        path = self.root / "releases" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def deploy(self, release_dir: Path) -> RolloutResult:
        self.lines.append(f"==== deploy {release_dir.name}")
        return compose_rollout(self.app, release_dir, log=self.lines.append, state_dir=self.root / "state")

    def log_text(self) -> str:
        return "\n".join(self.lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_ids(client: docker.DockerClient, project: str, service: str) -> set[str]:
    engine = DockerEngine(client)
    return {c.id for c in engine.containers(project, service)}


@pytest.fixture
def deployer(tmp_path: Path, compose_project: str, compose_variant: str, base_image: str) -> Deployer:
    return Deployer(make_app(compose_project), tmp_path)


class TestRollingReleases:
    def test_release_sequence_behind_a_health_aware_proxy(
        self, deployer: Deployer, docker_client: docker.DockerClient, compose_project: str,
    ) -> None:
        """v1 serves; v2 rolls in with no failed request; a v3 that never gets healthy and a v4 that
        does not build both fail and leave v2 serving, again with no failed request."""
        deployer.deploy(write_sample_app(deployer.release("v1"), "v1"))
        with HealthyProxy(docker_client, compose_project, "web") as proxy:
            url = f"{proxy.url}/version.txt"
            assert wait_for(lambda: get_text(url) == (200, "v1"), timeout=15), deployer.log_text()
            with LoadLoop(url, rate=LOAD_RATE, max_seconds=LOAD_MAX_SECONDS) as load:
                wait_for(lambda: load.report.ok >= 25, timeout=5)
                result = deployer.deploy(write_sample_app(deployer.release("v2"), "v2"))
                assert wait_for(lambda: get_text(url) == (200, "v2"), timeout=10)
                after_v2 = load.report.ok + load.report.failed

                with pytest.raises(HealthCheckFailed) as unhealthy:
                    deployer.deploy(write_sample_app(deployer.release("v3"), "v3", healthy=False))
                with pytest.raises(ComposeError) as broken:
                    deployer.deploy(write_sample_app(deployer.release("v4"), "v4", build_fails=True))
                wait_for(lambda: load.report.ok + load.report.failed >= after_v2 + 25, timeout=5)
                report = load.stop()
        print(f"load: {report.ok} ok, {report.failed} failed in {report.seconds:.1f}s; {dict(report.versions)}")
        assert report.failed == 0, (report.failures, proxy.errors, deployer.log_text())
        assert set(report.versions) == {"v1", "v2"}
        assert [s.action for s in result.services] == ["rolling"]
        assert "became unhealthy" in str(unhealthy.value)
        assert "last health probe" in str(unhealthy.value)
        assert "intentional build failure" in str(broken.value)
        assert len(service_ids(docker_client, compose_project, "web")) == 1
        live = LiveRecord(record_path(deployer.root / "state", compose_project), compose_project).load(compose_project)
        assert live == {"web": service_ids(docker_client, compose_project, "web")}

    def test_redeploying_the_same_release_touches_nothing(
        self, deployer: Deployer, docker_client: docker.DockerClient, compose_project: str,
    ) -> None:
        """A second rollout of an unchanged release plans every service as unchanged and keeps its containers."""
        release = write_sample_app(deployer.release("v1"), "v1")
        deployer.deploy(release)
        before = service_ids(docker_client, compose_project, "web")
        result = deployer.deploy(release)
        assert [(s.service, s.action) for s in result.services] == [("web", "unchanged")]
        assert service_ids(docker_client, compose_project, "web") == before

    def test_leftovers_of_an_interrupted_rollout_are_removed(
        self, deployer: Deployer, docker_client: docker.DockerClient, compose_project: str,
    ) -> None:
        """Extra containers a killed worker left beside the recorded ones are removed by the next rollout."""
        release = write_sample_app(deployer.release("v1"), "v1")
        deployer.deploy(release)
        recorded = service_ids(docker_client, compose_project, "web")
        # What a worker killed right after starting the new containers leaves behind.
        compose = ComposeProject(detect_compose(), compose_project, release, ("docker-compose.yml",))
        compose.check(compose.scale_beside_argv("web", 2), log=deployer.lines.append, timeout=120, what="scale")
        assert len(service_ids(docker_client, compose_project, "web")) == 2

        result = deployer.deploy(write_sample_app(deployer.release("v2"), "v2"))
        assert len(result.leftovers_removed) == 1
        assert not set(result.leftovers_removed) & recorded
        assert "left-over container(s) of an interrupted rollout" in deployer.log_text()
        web = service_ids(docker_client, compose_project, "web")
        assert len(web) == 1 and not web & recorded

    def test_a_worker_on_another_machine_finds_the_leftovers_in_the_record_kept_in_redis(
        self, tmp_path: Path, compose_project: str, base_image: str, docker_client: docker.DockerClient,
        redis: redis_lib.Redis,
    ) -> None:
        """Machine A rolls v1 out and dies leaving a container beside it; machine B (its own state_dir,
        no record file) deploys v2 to the same engine and removes the left-over, as A would have."""
        del base_image  # the sample app builds on it
        app = make_app(compose_project)
        lines: list[str] = []
        release = write_sample_app(tmp_path / "v1", "v1")
        compose_rollout(app, release, log=lines.append, state_dir=tmp_path / "machine-a", shared=redis)
        recorded = service_ids(docker_client, compose_project, "web")
        compose = ComposeProject(detect_compose(), compose_project, release, ("docker-compose.yml",))
        compose.check(compose.scale_beside_argv("web", 2), log=lines.append, timeout=120, what="scale")

        result = compose_rollout(app, write_sample_app(tmp_path / "v2", "v2"), log=lines.append,
                                 state_dir=tmp_path / "machine-b", shared=redis)
        assert len(result.leftovers_removed) == 1 and not set(result.leftovers_removed) & recorded, lines
        web = service_ids(docker_client, compose_project, "web")
        assert len(web) == 1 and not web & recorded
        assert LiveRecord(record_path(tmp_path / "machine-b", app.name), app.name).load(compose_project) == {"web": web}


class TestRecreateFallback:
    def test_django_like_project_is_recreated_and_says_why(
        self, deployer: Deployer, docker_client: docker.DockerClient, compose_project: str,
    ) -> None:
        """web (fixed host port) and db (named volume) deploy, then redeploy by recreate, each logging why;
        the database's volume survives and the service dropped from the files is removed as an orphan."""
        port = free_port()
        first = deployer.deploy(
            write_django_like_app(deployer.release("r1"), "r1", port, db_name="app", with_cache=True))
        assert [(s.service, s.action) for s in first.services] == [
            ("cache", "start"), ("db", "start"), ("web", "start")]
        (cache,) = first.live["cache"]
        assert wait_for(lambda: get_text(f"http://127.0.0.1:{port}/version.txt") == (200, "r1"), 10)

        second = deployer.deploy(write_django_like_app(deployer.release("r2"), "r2", port, db_name="app2"))
        assert [(s.service, s.action) for s in second.services] == [("db", "recreate"), ("web", "recreate")]
        assert second.orphans_removed == (cache,)
        assert "cache" not in second.live
        log = deployer.log_text()
        assert "web: recreating (config changed" in log
        assert f"cannot run twice: publishes fixed host port {port}" in log
        assert "must not run twice: mounts named volume 'db_data'" in log
        assert wait_for(lambda: get_text(f"http://127.0.0.1:{port}/version.txt") == (200, "r2"), 10)
        (db,) = docker_client.containers.list(filters={"label": [
            f"com.docker.compose.project={compose_project}", "com.docker.compose.service=db"]})
        boots = db.exec_run(["cat", "/var/lib/postgresql/data/boots"]).output.decode().split()
        assert boots == ["app", "app2"]


    def test_forced_rolling_on_a_fixed_port_fails_and_keeps_the_old_container(
        self, deployer: Deployer, docker_client: docker.DockerClient, compose_project: str,
    ) -> None:
        """A label forcing `rolling` on a fixed host port fails at start ("port is already allocated"):
        the half-made new container is removed and the old one keeps serving."""
        port = free_port()
        release = write_django_like_app(deployer.release("r1"), "r1", port)
        deployer.deploy(release)
        before = service_ids(docker_client, compose_project, "web")
        forced = write_django_like_app(deployer.release("r2"), "r2", port)
        compose_file = forced / "docker-compose.yml"
        compose_file.write_text(compose_file.read_text().replace(
            "    depends_on:", "    labels:\n      hooksvc.strategy: rolling\n    depends_on:"))
        with pytest.raises(ComposeError, match="already allocated"):
            deployer.deploy(forced)
        assert "overrides: publishes fixed host port" in deployer.log_text()
        assert service_ids(docker_client, compose_project, "web") == before
        assert get_text(f"http://127.0.0.1:{port}/version.txt") == (200, "r1")


class TestRecreateStrategy:
    def test_strategy_recreate_runs_plain_up(
        self, tmp_path: Path, compose_project: str, compose_variant: str, base_image: str,
        docker_client: docker.DockerClient,
    ) -> None:
        """Strategy `recreate` replaces the container with `up -d --remove-orphans` and gates its health."""
        deployer = Deployer(make_app(compose_project, strategy="recreate"), tmp_path)
        deployer.deploy(write_sample_app(deployer.release("v1"), "v1"))
        first = service_ids(docker_client, compose_project, "web")
        result = deployer.deploy(write_sample_app(deployer.release("v2"), "v2"))
        assert "--remove-orphans" in deployer.log_text()
        assert result.live["web"] and set(result.live["web"]) != first


"""A deploy job's rolling update leaves the retired container's removal to the upkeep after the record:
real git, Redis and Docker, the job run in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.live_services import read_services
from hooksvc.store import open_store
from tests.helpers.config import make_config
from tests.helpers.docker import write_sample_app
from tests.helpers.git import GitOrigin
from workers.docker_engine import DockerEngine
from workers.jobs import execute
from workers.rollout.live_record import record_path

pytestmark = pytest.mark.docker


def test_the_old_container_is_removed_after_the_deployment_is_recorded_and_never_counted_live(
    tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis, compose_project: str,
    base_image: str, docker_client: docker.DockerClient,
) -> None:
    """The second release's rollout stops the first release's container and leaves its removal until the
    deployment is recorded succeeded; the record of live containers and the services record name only the
    new container, and once the job returns the old one is gone."""
    origin = make_git_origin("retire")
    config = make_config(tmp_path, extra=f"""
        [apps.retire]
        host = "github"
        repo = "acme/retire"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{compose_project}"
        health_timeout = "60s"
    """)
    store = open_store(config, redis)
    engine = DockerEngine(docker_client)

    def deploy(version: str) -> str:
        files = write_sample_app(tmp_path / "src" / version, version, boot_seconds=0.2)
        sha = origin.commit(version, {str(p.relative_to(files)): p.read_bytes() for p in files.rglob("*")
                                      if p.is_file()})
        dep = store.intake.submit([NewDeployment("retire", sha, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        assert execute(config, store, redis, dep.id) == "succeeded", store.get(dep.id).error
        return dep.id

    deploy("v1")
    (old,) = [c.id for c in engine.containers(compose_project)]
    second = deploy("v2")

    (new,) = [c.id for c in engine.containers(compose_project)]
    assert new != old
    assert engine.state(old) is None
    lines = store.logs.read(second)[0]
    stopped = next(i for i, line in enumerate(lines) if "it is removed once the deployment is recorded" in line)
    finished = lines.index("finished: succeeded")
    removed = lines.index("removed 1 retired container(s)")
    assert stopped < finished < removed
    record = json.loads(record_path(config.worker.state_dir, "retire").read_text())
    assert record["containers"] == {"web": [new]}
    services = read_services(redis, "retire")
    assert services is not None and services.deployment_id == second
    assert [s.runs for s in services.services] == [f"1 container(s): {new[:12]}"]

"""Pull-request previews deployed and torn down by the job with real git, compose and Docker (SPEC §13):
beside production, one per PR, each at its own port, and nothing of one left once it goes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.config import Config
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.preview_records import PreviewRecords, request_teardown, sweep_expired
from hooksvc.store import DeploymentStore
from tests.helpers.config import make_config
from tests.helpers.docker import HEALTH_TEST, LoadLoop, get_text, remove_project, wait_for, write_sample_app
from tests.helpers.git import GitOrigin, git
from workers.jobs import execute

pytestmark = pytest.mark.docker

#: A compose file like a typical app's: web (busybox httpd) on an ephemeral port, db keeping a file in
#: a named volume; the post_deploy step writes the preview's number into its own db's volume.
COMPOSE = f"""
services:
  web:
    build: .
    init: true
    ports:
      - "127.0.0.1::80"
    stop_grace_period: 2s
    healthcheck:
      test: ["CMD", "sh", "-c", "{HEALTH_TEST}"]
      interval: 1s
      timeout: 3s
      retries: 2
      start_period: 4s
  db:
    build: .
    init: true
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumes:
      - data:/data
volumes:
  data:
"""


def free_port_range(size: int) -> tuple[int, int]:
    """`size` consecutive ports nothing listens on now, high enough to stay clear of other tests."""
    for first in range(29100, 39000, 50):
        if all(_free(p) for p in range(first, first + size)):
            return first, first + size - 1
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - a probe
        except OSError:
            return False
    return True


def app_files(tmp_path: Path, version: str) -> dict[str, str]:
    """The files of the sample app serving `version`, with COMPOSE as its compose file."""
    directory = write_sample_app(tmp_path / "sources" / version, version)
    return {"Dockerfile": (directory / "Dockerfile").read_text(), "docker-compose.yml": COMPOSE,
            "www/version.txt": f"{version}\n", "www/health": "ok\n"}


@dataclass
class World:
    origin: GitOrigin
    config: Config
    store: DeploymentStore
    redis: redis_lib.Redis
    project: str
    client: docker.DockerClient
    tmp_path: Path

    def push_pr(self, number: int, version: str, compose: str = COMPOSE) -> str:
        """Commit `version` (with `compose` as its compose file) on the PR's branch and point
        refs/pull/N/head at it, as GitHub does."""
        files = {**app_files(self.tmp_path, version), "docker-compose.yml": compose}
        sha = self.origin.commit(f"pr {number}: {version}", files, branch=f"pr{number}")
        git("--git-dir", str(self.origin.path), "update-ref", f"refs/pull/{number}/head", sha)
        return sha

    def run(self, new: NewDeployment) -> Deployment:
        dep = self.store.intake.submit([new]).deployments[0]
        execute(self.config, self.store, self.redis, dep.id)
        return self.store.get(dep.id)

    def deploy_pr(self, number: int, sha: str, *, fork: bool = False) -> Deployment:
        return self.run(NewDeployment("web", sha, f"refs/pull/{number}/head", Trigger.PUSH, preview=number,
                                      fork=fork))

    def log(self, dep: Deployment) -> str:
        return "\n".join(self.store.logs.read(dep.id)[0])

    def leftovers(self, number: int) -> list[str]:
        """Whatever of preview `number` the engine still has: containers, networks, volumes, images."""
        project = f"{self.project}-pr-{number}"
        label = {"label": f"com.docker.compose.project={project}"}
        found = [f"container {c.name}" for c in self.client.containers.list(all=True, filters=label)]
        found += [f"network {n.name}" for n in self.client.networks.list(filters=label)]
        found += [f"volume {v.name}" for v in self.client.volumes.list(filters=label)]
        found += [f"image {s['Id'][:19]}" for s in self.client.api.images(filters=label)]
        found += [f"tag {t}" for s in self.client.api.images() for t in s.get("RepoTags") or []
                  if t.startswith((f"{project}-", f"{project}."))]
        return found

    def container_ids(self, project: str) -> set[str]:
        label = {"label": f"com.docker.compose.project={project}"}
        return {c.id for c in self.client.containers.list(filters=label)}


def make_world(tmp_path: Path, redis: redis_lib.Redis, project: str, client: docker.DockerClient,
               previews: str) -> World:
    origin = GitOrigin(tmp_path / "origins" / "web.git")
    origin.commit("production", app_files(tmp_path, "production"))
    return World(origin, world_config(tmp_path, origin, project, previews), DeploymentStore(redis), redis, project,
                 client, tmp_path)


def world_config(tmp_path: Path, origin: GitOrigin, project: str, previews: str) -> Config:
    """App `web` of `origin` as compose project `project`, with `previews` as its previews table."""
    return make_config(tmp_path, extra=f"""
        [apps.web]
        host = "github"
        repo = "acme/web"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{project}"
        health_timeout = "60s"
        start_grace = "1s"
        post_deploy = [{{ service = "db", command = ["sh", "-c", "echo \\"migrated $PR\\" > /data/migrated"] }}]

        [apps.web.previews]
        {previews}
    """)


@pytest.fixture
def cleanup(docker_client: docker.DockerClient, compose_project: str) -> Iterator[None]:
    """Whatever a failed test leaves of its previews goes (the project fixture removes production's)."""
    started = int(time.time())
    yield
    for number in range(1, 10):
        remove_project(docker_client, f"{compose_project}-pr-{number}", images_since=started)


def published_port(client: docker.DockerClient, project: str) -> int:
    container = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                          "com.docker.compose.service=web"]})[0]
    return int(container.ports["80/tcp"][0]["HostPort"])


def read_db(client: docker.DockerClient, project: str) -> str:
    container = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                          "com.docker.compose.service=db"]})[0]
    return container.exec_run(["cat", "/data/migrated"]).output.decode().strip()


def test_previews_run_beside_production_and_leave_nothing_behind(
    tmp_path: Path, redis: redis_lib.Redis, compose_project: str, docker_client: docker.DockerClient,
    base_image: str, cleanup: None,
) -> None:
    """Two PRs run side by side with production, each at its own port, while production answers every
    request; a push to one PR replaces only that preview; its release step ran against its own db;
    closing it leaves no container, network, volume or image of it, and frees its port."""
    del base_image, cleanup
    first, last = free_port_range(3)
    world = make_world(tmp_path, redis, compose_project, docker_client,
                       f'url = "http://127.0.0.1:{{port}}/"\nports = "{first}-{last}"\n'
                       'environment = { PR = "{number}" }\n')
    production = world.run(NewDeployment("web", world.origin.head(), "refs/heads/main", Trigger.PUSH))
    assert production.state is DeploymentState.SUCCEEDED, production.error
    url = f"http://127.0.0.1:{published_port(docker_client, compose_project)}/version.txt"
    production_containers = world.container_ids(compose_project)
    with LoadLoop(url, rate=10.0, max_seconds=600) as load:
        seven = world.deploy_pr(7, world.push_pr(7, "pr7-a"))
        eight = world.deploy_pr(8, world.push_pr(8, "pr8-a"))
        assert (seven.state, eight.state) == (DeploymentState.SUCCEEDED,) * 2, (seven.error, eight.error)
        records = {r.number: r for r in PreviewRecords(redis).of_app("web")}
        assert {n: r.state for n, r in records.items()} == {7: "live", 8: "live"}
        assert records[7].port != records[8].port and {records[7].port, records[8].port} <= set(range(first, last + 1))
        assert records[7].url == f"http://127.0.0.1:{records[7].port}/"
        assert get_text(f"{records[7].url}version.txt") == (200, "pr7-a")
        assert get_text(f"{records[8].url}version.txt") == (200, "pr8-a")
        assert read_db(docker_client, f"{compose_project}-pr-7") == "migrated 7"
        eight_containers = world.container_ids(f"{compose_project}-pr-8")

        update = world.deploy_pr(7, world.push_pr(7, "pr7-b"))
        assert update.state is DeploymentState.SUCCEEDED, update.error
        assert wait_for(lambda: get_text(f"{records[7].url}version.txt") == (200, "pr7-b"), timeout=10)
        assert world.container_ids(f"{compose_project}-pr-8") == eight_containers
        assert get_text(f"{records[8].url}version.txt") == (200, "pr8-a")

        before = world.leftovers(7)
        assert {what.split()[0] for what in before} == {"container", "network", "volume", "image", "tag"}, before
        closed = world.run(NewDeployment("web", update.sha, "refs/pull/7/head", Trigger.TEARDOWN, preview=7))
        assert closed.state is DeploymentState.SUCCEEDED, closed.error
        assert world.leftovers(7) == []
        assert PreviewRecords(redis).get("web", 7) is None
        assert not (world.config.worker.state_dir / "previews" / "web" / "pr-7").exists()
        assert get_text(f"{records[7].url}version.txt")[0] == 0
        removed = request_teardown(world.store, world.config.apps["web"], 8, operator="dan")
        execute(world.config, world.store, redis, removed.id)
        assert world.store.get(removed.id).state is DeploymentState.SUCCEEDED
        assert world.leftovers(8) == []
        report = load.stop()
    assert report.failed == 0 and report.ok > 0, report.failures
    assert set(report.versions) == {"production"}
    assert world.container_ids(compose_project) == production_containers
    assert read_db(docker_client, compose_project) == "migrated"
    assert redis.hgetall("hooksvc:preview-ports") == {}


def test_max_refuses_or_evicts_and_ttl_tears_down(
    tmp_path: Path, redis: redis_lib.Redis, compose_project: str, docker_client: docker.DockerClient,
    base_image: str, cleanup: None,
) -> None:
    """At `max`, on_max refuse fails the new preview with "preview limit reached"; evict-oldest tears the
    least recently pushed one down for it; past `ttl` the sweep's teardown removes the last one."""
    del base_image, cleanup
    labels = ('url = "https://pr-{number}.example.com"\n'
              'labels = { "example.router.pr{number}" = "Host(`pr-{number}.example.com`)" }\n'
              'max = 1\nttl = "1h"\n')
    world = make_world(tmp_path, redis, compose_project, docker_client, labels + 'on_max = "refuse"\n')
    one = world.deploy_pr(1, world.push_pr(1, "pr1"))
    assert one.state is DeploymentState.SUCCEEDED, one.error
    web = docker_client.containers.list(filters={"label": f"com.docker.compose.project={compose_project}-pr-1"})
    assert {c.labels.get("example.router.pr1") for c in web} >= {"Host(`pr-1.example.com`)"}
    assert all(not c.ports or all(not v for v in c.ports.values()) for c in web)

    two_sha = world.push_pr(2, "pr2")
    refused = world.deploy_pr(2, two_sha)
    assert refused.state is DeploymentState.FAILED and "preview limit reached" in refused.error
    assert world.leftovers(2) == [] and PreviewRecords(redis).get("web", 2) is None

    world.config = world_config(tmp_path, world.origin, compose_project, labels + 'on_max = "evict-oldest"\n')
    evicting = world.deploy_pr(2, two_sha)
    assert evicting.state is DeploymentState.SUCCEEDED, evicting.error
    assert "evicting preview #1, the least recently pushed" in world.log(evicting)
    evicted = world.store.recent(app="web", limit=5)
    teardown = next(d for d in evicted if d.trigger is Trigger.TEARDOWN)
    assert (teardown.preview, teardown.state) == (1, DeploymentState.SUCCEEDED)
    assert f"evicted by deployment {evicting.id}" in world.log(teardown)
    assert world.leftovers(1) == []
    assert [r.number for r in PreviewRecords(redis).of_app("web")] == [2]

    queued = sweep_expired(world.store, world.config, now=time.time() + 3601)
    assert [(d.preview, d.trigger) for d in queued] == [(2, Trigger.TEARDOWN)]
    execute(world.config, world.store, redis, queued[0].id)
    assert world.leftovers(2) == [] and PreviewRecords(redis).of_app("web") == []


def test_a_forks_preview_runs_confined_and_without_registry_logins(
    tmp_path: Path, redis: redis_lib.Redis, compose_project: str, docker_client: docker.DockerClient,
    base_image: str, cleanup: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With allow_forks a fork's PR is previewed, built with a Docker config holding no registry login;
    one whose compose file asks for the host (privileged, a bind outside its checkout) fails naming it."""
    del base_image, cleanup
    logins = tmp_path / "docker-config"
    logins.mkdir()
    (logins / "config.json").write_text('{"auths": {"registry.example.com": {"auth": "c2VjcmV0OnNlY3JldA=="}}}')
    plugins = Path.home() / ".docker" / "cli-plugins"
    if plugins.is_dir():
        (logins / "cli-plugins").symlink_to(plugins)
    monkeypatch.setenv("DOCKER_CONFIG", str(logins))
    world = make_world(tmp_path, redis, compose_project, docker_client,
                       'url = "https://pr-{number}.example.com"\nlabels = { "pr" = "{number}" }\nallow_forks = true\n')
    fork = world.deploy_pr(5, world.push_pr(5, "fork"), fork=True)
    assert fork.state is DeploymentState.SUCCEEDED, fork.error
    assert "(a fork: confined)" in world.log(fork)
    assert os.environ["DOCKER_CONFIG"] == str(logins)  # put back once the preview was built

    privileged = COMPOSE.replace("    init: true\n", "    init: true\n    privileged: true\n", 1)
    refused = world.deploy_pr(6, world.push_pr(6, "privileged", privileged), fork=True)
    assert refused.state is DeploymentState.FAILED and "services.web.privileged" in refused.error
    binds = COMPOSE.replace("      - data:/data\n", "      - data:/data\n      - /etc:/host-etc\n")
    refused = world.deploy_pr(6, world.push_pr(6, "binds", binds), fork=True)
    assert refused.state is DeploymentState.FAILED and "services.db.volumes" in refused.error, refused.error
    assert world.container_ids(f"{compose_project}-pr-6") == set()

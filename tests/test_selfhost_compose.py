"""The docker-compose.yml that runs hooksvc itself: read as data, then built and run on the real engine.

The running half builds the shipped Dockerfile FROM a stand-in for `python:3.11-slim-trixie` and
runs the shipped docker-compose.yml (a stand-in for `redis:7-alpine` swapped in by an override
file: no registry is reachable; tests/helpers/selfhost.py makes both from Debian packages). A
signed push to the web container makes the worker container deploy a sample app on the host's
engine. The app's origin is served over HTTP (`git http-backend`, a clone token from `.env`) and
the commit statuses go to the stand-in git host; the containers reach both through a relay on the
compose network's gateway address, this machine's own address on that network.

Cold (no cached root filesystems) the module costs about 3 minutes more: two mmdebstrap runs.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.models.containers import Container

from tests.helpers.docker import HealthyProxy, LoadLoop, get_text, remove_project, wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.git import GitHttpServer, GitOrigin
from tests.helpers.payloads import github_push, github_request
from tests.helpers.redis_server import free_port
from tests.helpers.selfhost import (
    PYTHON_ROOTFS,
    REDIS_ROOTFS,
    STATE_DIR,
    SelfHostedCompose,
    TcpRelay,
    build_hooksvc_image,
    import_rootfs,
    remove_app_state,
    remove_images,
    sample_app_files,
    scratch_dir,
)

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
CONFIG_IN_CONTAINER = "/etc/hooksvc/config.toml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    # safe_load resolves the `<<: *hooksvc` merge keys the way compose does.
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return dict(document["services"])


def short_volumes(service: dict[str, Any]) -> list[list[str]]:
    """The service's volumes in `source:target[:mode]` form, split on the colons."""
    return [entry.split(":") for entry in service.get("volumes", []) if isinstance(entry, str)]


def command_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


class TestSelfHostCompose:
    def test_has_redis_web_and_worker(self, services: dict[str, Any]) -> None:
        """The file defines exactly the three services hooksvc needs: redis, web and worker."""
        assert set(services) == {"redis", "web", "worker"}

    def test_redis_keeps_an_append_only_file(self, services: dict[str, Any]) -> None:
        """Redis runs from redis:7-alpine with appendonly on, so queued deployments survive a restart."""
        redis = services["redis"]
        assert redis["image"].startswith("redis:7")
        words = command_words(redis)
        assert words[words.index("--appendonly") + 1] == "yes"

    def test_web_serves_on_8080(self, services: dict[str, Any]) -> None:
        """The web service runs `hooksvc serve` on 0.0.0.0:8080, published on $HOOKSVC_PUBLISH (default 8080)."""
        web = services["web"]
        assert command_words(web) == ["serve", "--bind", "0.0.0.0:8080"]
        assert web["ports"] == ["${HOOKSVC_PUBLISH:-8080}:8080"]

    def test_web_healthcheck_asks_healthz(self, services: dict[str, Any]) -> None:
        """The web service's healthcheck requests /healthz on port 8080."""
        test = services["web"]["healthcheck"]["test"]
        text = test if isinstance(test, str) else " ".join(test)
        assert "127.0.0.1:8080/healthz" in text

    def test_worker_runs_hooksvc_worker(self, services: dict[str, Any]) -> None:
        """The worker service runs `hooksvc worker` and can be scaled: no fixed name, no host port."""
        worker = services["worker"]
        assert command_words(worker) == ["worker"]
        assert "container_name" not in worker
        assert "ports" not in worker

    def test_worker_mounts_the_docker_socket(self, services: dict[str, Any]) -> None:
        """The worker mounts the host's Docker socket, since it deploys through the host's engine."""
        assert ["/var/run/docker.sock", "/var/run/docker.sock"] in short_volumes(services["worker"])

    def test_worker_keeps_state_at_the_same_path_as_the_host(self, services: dict[str, Any]) -> None:
        """The worker's state directory is the host's at the same path, so apps' bind mounts resolve."""
        assert ["/var/lib/hooksvc", "/var/lib/hooksvc"] in short_volumes(services["worker"])

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_config_is_mounted_read_only(self, services: dict[str, Any], name: str) -> None:
        """Both hooksvc services mount ./config.toml read-only and are pointed at it."""
        service = services[name]
        assert ["./config.toml", CONFIG_IN_CONTAINER, "ro"] in short_volumes(service)
        assert service["environment"]["HOOKSVC_CONFIG"] == CONFIG_IN_CONTAINER

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_secrets_come_from_env_file_not_the_compose_file(self, services: dict[str, Any], name: str) -> None:
        """Secrets reach the hooksvc services through the .env file; the environment holds no secret."""
        service = services[name]
        assert service["env_file"] in (".env", [".env"])
        assert set(service["environment"]) == {"HOOKSVC_CONFIG", "REDIS_URL"}

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_hooksvc_waits_for_a_healthy_redis(self, services: dict[str, Any], name: str) -> None:
        """Web and worker start only once Redis answers its healthcheck, and reach it by service name."""
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:6379/")
        assert "healthcheck" in services["redis"]


# ---- the shipped files, built and run -------------------------------------------------------------

#: A deployment of the sample app, from the webhook to the final commit status, on a busy machine.
DEPLOY_SECONDS = 150.0
#: `docker compose stop` of an idle hooksvc: web and worker stop on SIGTERM, redis after them.
IDLE_STOP_SECONDS = 5.0
LOAD_RATE = 20.0


@dataclass
class SelfHost:
    """hooksvc running from its own image and compose file, with a sample app to deploy."""

    stack: SelfHostedCompose
    client: docker.DockerClient
    web_url: str
    api_token: str
    app: str
    webhook_secret: str
    origin: GitOrigin
    host: FakeGitHost
    image: str
    build_seconds: float

    @property
    def context(self) -> str:
        return f"hooksvc/{self.app}"

    def push(self, version: str, boot_seconds: float = 1.0) -> str:
        """Commit `version` of the sample app on main and deliver GitHub's signed push; returns the sha."""
        before = self.origin.sha("refs/heads/main") or "0" * 40
        sha = self.origin.commit(version, sample_app_files(version, boot_seconds))
        hook = github_request(github_push(repo="acme/sample", after=sha, before=before), self.webhook_secret)
        request = urllib.request.Request(f"{self.web_url}/hooks/github", data=hook.body, headers=hook.headers,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status in (200, 202), answer.read()
        return sha

    def final_status(self, sha: str) -> str:
        states = self.host.statuses("github", sha, self.context)
        return states[-1] if states and states[-1] != "pending" else ""

    def deployments(self) -> list[dict[str, Any]]:
        request = urllib.request.Request(f"{self.web_url}/api/deployments?app={self.app}",
                                         headers={"Authorization": f"Bearer {self.api_token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return list(json.load(answer)["deployments"])

    def redis_workers(self) -> int:
        """How many RQ workers are registered in the stack's Redis."""
        return int(self.stack.redis_cli("SCARD", "rq:workers") or 0)

    def up(self) -> None:
        self.stack.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout", "150")

    def live_container(self) -> Container:
        """The sample app's one healthy container."""
        found = self.client.containers.list(filters={"label": [f"com.docker.compose.project={self.app}"],
                                                     "health": "healthy"})
        assert len(found) == 1, found
        return found[0]

    def memory_mib(self, service: str) -> float:
        """The memory the engine counts for one of hooksvc's containers (cgroup usage less page cache)."""
        stats = self.client.api.stats(self.stack.container(self.client, service).id, stream=False)
        memory = stats["memory_stats"]
        cache = memory.get("stats", {}).get("inactive_file", memory.get("stats", {}).get("cache", 0))
        return float(memory["usage"] - cache) / 2**20

    def served_version(self) -> str:
        """What the sample app's live container answers on its published loopback port."""
        proxy = HealthyProxy(self.client, self.app, "web")
        proxy.refresh()
        assert proxy.backends, f"no healthy container of {self.app}"
        return get_text(f"http://{proxy.backends[0][0]}:{proxy.backends[0][1]}/version.txt")[1]


@pytest.fixture(scope="module")
def selfhost_images(docker_client: docker.DockerClient, base_image: str) -> Iterator[tuple[str, str, float]]:
    """(hooksvc image, redis stand-in, build seconds): the stand-ins imported, the Dockerfile built; all
    three images are removed afterwards."""
    del base_image  # the sample app builds FROM it
    tag = f"hooksvc-test/selfhost:{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    try:
        python_image = import_rootfs(docker_client, PYTHON_ROOTFS, "hooksvc-test/python-standin")
        made.append(python_image)
        seconds = build_hooksvc_image(docker_client, python_image, tag)
        made.insert(0, tag)
        redis_image = import_rootfs(docker_client, REDIS_ROOTFS, "hooksvc-test/redis-standin")
        made.append(redis_image)
        yield tag, redis_image, seconds
    finally:
        remove_images(docker_client, made if tag in made else [tag, *made])


@pytest.fixture(scope="module")
def selfhost(docker_client: docker.DockerClient, selfhost_images: tuple[str, str, float]) -> Iterator[SelfHost]:
    """hooksvc up from docker-compose.yml (web healthy) with one app, `acme/sample`, on a stand-in GitHub."""
    image, redis_image, build_seconds = selfhost_images
    workdir = scratch_dir("hsself-")
    suffix = uuid.uuid4().hex[:8]
    app, project = f"hsselfapp{suffix}", f"hsself{suffix}"
    tokens = {name: secrets.token_hex(16) for name in ("github", "clone", "webhook", "api")}
    web_port = free_port()
    stack = SelfHostedCompose(workdir, project, redis_image, {
        "HOOKSVC_IMAGE": image, "HOOKSVC_PUBLISH": f"127.0.0.1:{web_port}",
        "GITHUB_TOKEN": tokens["github"], "SAMPLE_CLONE_TOKEN": tokens["clone"],
        "SAMPLE_WEBHOOK_SECRET": tokens["webhook"], "HOOKSVC_API_TOKENS": tokens["api"],
    })
    state_dir_existed = STATE_DIR.exists()
    started = int(time.time())
    try:
        with FakeGitHost({"github": tokens["github"]}) as host, \
                GitHttpServer(workdir / "git", token=tokens["clone"]) as git_server:
            origin = git_server.origin("sample")
            stack.compose("up", "--no-start", "--no-build")
            gateway = stack.gateway(docker_client)
            host_port = int(host.url.rsplit(":", 1)[1])
            git_port = int(git_server.url.rsplit(":", 1)[1])
            with TcpRelay(gateway, host_port) as host_relay, TcpRelay(gateway, git_port) as git_relay:
                (workdir / "config.toml").write_text(SELFHOST_CONFIG.format(
                    web_port=web_port, state_dir=STATE_DIR, host_url=f"http://{gateway}:{host_relay.port}",
                    clone_url=f"http://{gateway}:{git_relay.port}/sample.git", app=app))
                running = SelfHost(stack, docker_client, f"http://127.0.0.1:{web_port}", tokens["api"], app,
                                   tokens["webhook"], origin, host, image, build_seconds)
                running.up()
                yield running
                assert not host.violations, host.violations
    finally:
        stack.down()
        remove_project(docker_client, app, images_since=started)
        remove_app_state(app, state_dir_existed)
        shutil.rmtree(workdir, ignore_errors=True)


#: config.toml as a user writes it from config.example.toml; the secrets are in .env (`*_env`).
SELFHOST_CONFIG = """\
[server]
public_url = "http://127.0.0.1:{web_port}"
api_tokens_env = "HOOKSVC_API_TOKENS"

[worker]
state_dir = "{state_dir}"

[hosts.github]
kind = "github"
api_url = "{host_url}/github"
token_env = "GITHUB_TOKEN"

[apps.{app}]
host = "github"
repo = "acme/sample"
clone_url = "{clone_url}"
token_env = "SAMPLE_CLONE_TOKEN"
secret_env = "SAMPLE_WEBHOOK_SECRET"
health_timeout = "90s"
"""


@pytest.mark.docker
@pytest.mark.xdist_group("selfhost")
class TestSelfHostComposeRuns:
    """One test, its steps in order: two stacks of the shipped file cannot run at once on one machine
    (both bind-mount the host's /var/lib/hooksvc), so the steps must never be split between two test
    processes, each bringing up a stack of its own."""

    def test_runs_deploys_and_stops_as_shipped(self, selfhost: SelfHost) -> None:
        """Healthy and connected; a push deploys on the host's engine with no failed request; an idle stop
        is quick and clean; a stop during a deployment lets it finish."""
        self.check_web_is_healthy_and_a_worker_is_connected(selfhost)
        self.check_a_signed_push_deploys_on_the_hosts_engine_without_a_failed_request(selfhost)
        self.check_stop_while_idle_takes_under_five_seconds(selfhost)
        self.check_stop_during_a_deployment_lets_it_finish(selfhost)

    def check_web_is_healthy_and_a_worker_is_connected(self, selfhost: SelfHost) -> None:
        """`up` makes web healthy, serving /healthz on the published loopback port; the worker registers in Redis."""
        web = selfhost.stack.container(selfhost.client, "web")
        assert web.attrs["State"]["Health"]["Status"] == "healthy"
        status, body = get_text(f"{selfhost.web_url}/healthz")
        assert status == 200 and json.loads(body)["redis"] == "ok", body
        assert wait_for(lambda: selfhost.redis_workers() >= 1, timeout=30), selfhost.stack.logs()

    def check_a_signed_push_deploys_on_the_hosts_engine_without_a_failed_request(self, selfhost: SelfHost) -> None:
        """A signed push makes the worker container build and roll out the sample app on the host's engine, its
        page bind-mounted from the release checkout at the same path on the host, with no failed request under
        load, and the commit status reaches the git host."""
        first = selfhost.push("v1")
        assert wait_for(lambda: selfhost.final_status(first), DEPLOY_SECONDS, 0.5), selfhost.stack.logs()
        assert selfhost.final_status(first) == "success", selfhost.deployments()
        with HealthyProxy(selfhost.client, selfhost.app, "web") as proxy:
            url = f"{proxy.url}/version.txt"
            assert wait_for(lambda: get_text(url) == (200, "v1"), timeout=20)
            with LoadLoop(url, rate=LOAD_RATE, max_seconds=DEPLOY_SECONDS) as load:
                second = selfhost.push("v2")
                assert wait_for(lambda: selfhost.final_status(second), DEPLOY_SECONDS, 0.5), selfhost.stack.logs()
                assert wait_for(lambda: get_text(url) == (200, "v2"), timeout=10)
                time.sleep(1)
                report = load.stop()
        assert selfhost.final_status(second) == "success", selfhost.deployments()
        assert report.failed == 0, report.failures[:5]
        assert set(report.versions) == {"v1", "v2"} and report.ok >= LOAD_RATE * 3, report

        live = selfhost.live_container()
        checkout = STATE_DIR / "releases" / selfhost.app / second
        mounts = {m["Destination"]: m["Source"] for m in live.attrs["Mounts"]}
        assert mounts["/www"] == str(checkout / "www")
        assert (checkout / "www" / "version.txt").read_text() == "v2\n"
        deployment = next(d for d in selfhost.deployments() if d["sha"] == second)
        assert deployment["state"] == "succeeded" and deployment["previous_sha"] == first

        memory = {name: selfhost.memory_mib(name) for name in ("web", "worker", "redis")}
        size = selfhost.client.images.get(selfhost.image).attrs["Size"] / 1e6
        print(f"\nselfhost: image {size:.0f} MB, build {selfhost.build_seconds:.0f} s, "
              + ", ".join(f"{name} {mib:.1f} MiB" for name, mib in memory.items())
              + f"; {report.ok} requests during the rollout, {report.failed} failed")

    def check_stop_while_idle_takes_under_five_seconds(self, selfhost: SelfHost) -> None:
        """`docker compose stop` with no deployment running stops web, worker and redis within 5 s, each cleanly."""
        started = time.monotonic()
        selfhost.stack.compose("stop")
        seconds = time.monotonic() - started
        try:
            codes = {s: selfhost.stack.container(selfhost.client, s).attrs["State"]["ExitCode"]
                     for s in ("web", "worker", "redis")}
            print(f"\nselfhost: idle stop took {seconds:.1f} s, exit codes {codes}")
            assert seconds < IDLE_STOP_SECONDS, selfhost.stack.logs()
            assert codes == {"web": 0, "worker": 0, "redis": 0}, selfhost.stack.logs()
        finally:
            selfhost.up()

    def check_stop_during_a_deployment_lets_it_finish(self, selfhost: SelfHost) -> None:
        """`docker compose stop` while the worker rolls out a release waits for it: the release goes live, and
        once hooksvc is up again its record says succeeded and the git host gets the success status."""
        sha = selfhost.push("v3", boot_seconds=4.0)
        running = wait_for(lambda: any(d["sha"] == sha and d["state"] == "running" for d in selfhost.deployments()),
                           timeout=DEPLOY_SECONDS, interval=0.2)
        assert running, [{k: d.get(k) for k in ("id", "sha", "state", "error")} for d in selfhost.deployments()]
        started = time.monotonic()
        selfhost.stack.compose("stop", timeout=DEPLOY_SECONDS)
        seconds = time.monotonic() - started
        try:
            print(f"\nselfhost: stop during a deployment took {seconds:.1f} s")
            assert selfhost.served_version() == "v3", selfhost.stack.logs()
        finally:
            selfhost.up()
        assert wait_for(lambda: selfhost.final_status(sha), DEPLOY_SECONDS, 0.5), selfhost.stack.logs()
        assert selfhost.final_status(sha) == "success"
        deployment = next(d for d in selfhost.deployments() if d["sha"] == sha)
        assert deployment["state"] == "succeeded", deployment

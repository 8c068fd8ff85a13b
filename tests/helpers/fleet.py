"""Many apps, many `hooksvc worker` processes, one Redis: the multi-machine set-up, on one machine.

Each worker gets a config file of its own that differs only in `[worker] state_dir`, as workers on
separate machines would (own git mirrors, release checkouts and rollout records). Each app is the
sample app of tests/helpers/docker.py on a git origin of its own, with its own compose project and,
optionally, its own Docker engine (`docker_host`). Pushes are signed GitHub webhooks through the
production Flask app; everything else is real.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import redis as redis_lib
from flask.testing import FlaskClient

from hooksvc.config import Config, load_config
from hooksvc.deployments import Deployment
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.docker import remove_project, wait_for, write_sample_app
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.git import GitOrigin
from tests.helpers.payloads import github_push, github_request
from tests.helpers.processes import stop_process_groups

SECRET = "fleet-webhook-secret"
GH_TOKEN = "fleet-status-token"
#: A deployment of the sample app takes a few seconds; this bounds a stuck one on a loaded machine.
DEPLOY_TIMEOUT = 120.0


@dataclass(frozen=True)
class FleetApp:
    name: str
    origin: GitOrigin
    #: The compose project: unique per test run, so parallel test runs on one engine never meet.
    project: str
    docker_host: str | None = None
    health_timeout: str = "40s"
    #: Where the app's containers publish their port: the engine machine's address.
    publish_ip: str = "127.0.0.1"

    def section(self, host_url: str) -> str:
        engine = f'docker_host = "{self.docker_host}"\n' if self.docker_host else ""
        return textwrap.dedent(f"""
            [apps.{self.name}]
            host = "github"
            repo = "acme/{self.name}"
            clone_url = "{self.origin.path}"
            branch = "main"
            secret_env = "FLEET_SECRET"
            project = "{self.project}"
            health_timeout = "{self.health_timeout}"
            start_grace = "2s"
        """) + engine


def sample_app_files(tmp: Path, version: str, restart: str = "", start_period: str = "",
                     **kwargs: bool | float | str) -> dict[str, str | bytes | None]:
    """The files of the sample app at `version`, as a commit's file map (see `write_sample_app`);
    `restart` sets the service's restart policy (e.g. `unless-stopped`), `start_period` its
    healthcheck's (a slow boot stays `starting` instead of turning `unhealthy`)."""
    root = write_sample_app(tmp / f"src-{version}", version, **kwargs)  # type: ignore[arg-type]
    compose_file = root / "docker-compose.yml"
    text = compose_file.read_text()
    if restart:
        text = text.replace("    init: true\n", f"    init: true\n    restart: {restart}\n", 1)
    if start_period:
        text = text.replace("start_period: 4s", f"start_period: {start_period}", 1)
    compose_file.write_text(text)
    files: dict[str, str | bytes | None] = {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }
    if not kwargs.get("healthy", True):
        files["www/health"] = None
    return files


class Fleet:
    """Apps on git origins, a webhook client, and worker processes each with a state_dir of its own."""

    def __init__(self, tmp: Path, apps: list[FleetApp], host_url: str, redis: redis_lib.Redis,
                 redis_url: str, extra_app_lines: str = "") -> None:
        self.tmp = tmp
        self.apps = {a.name: a for a in apps}
        self.host_url = host_url
        self.redis_url = redis_url
        self.extra_app_lines = extra_app_lines
        self.env = {**os.environ, "FLEET_SECRET": SECRET, "GH_TOKEN": GH_TOKEN}
        self.env.pop("REDIS_URL", None)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.config: Config = load_config(str(self.write_config(tmp / "web")), self.env)
        self.store = DeploymentStore(redis)
        self.client: FlaskClient = create_app(self.config, connection=redis).test_client()

    def write_config(self, machine: Path) -> Path:
        """The config of one "machine": the same apps and Redis, its own state_dir."""
        machine.mkdir(parents=True, exist_ok=True)
        path = machine / "hooksvc.toml"
        text = textwrap.dedent(f"""
            [server]
            public_url = "http://deploy.test"
            [redis]
            url = "{self.redis_url}"
            [worker]
            state_dir = "{machine / 'state'}"
            keep_releases = 2
            [hosts.github]
            kind = "github"
            api_url = "{self.host_url}/github"
            token_env = "GH_TOKEN"
        """) + "".join(a.section(self.host_url) + self.extra_app_lines for a in self.apps.values())
        path.write_text(text)
        return path

    def start_worker(self, machine_number: int | None = None) -> subprocess.Popen[bytes]:
        """A `hooksvc worker` on "machine" `machine_number` (default: a new one), i.e. with its state_dir."""
        number = len(self.workers) if machine_number is None else machine_number
        machine = self.tmp / f"machine-{number}"
        config = self.write_config(machine)
        log = (machine / "worker.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(config), "worker"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.workers.append(proc)
        return proc

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """Until every started worker is registered with RQ and idle (a worker takes a second or more to start)."""
        from rq import Worker

        pids = {p.pid for p in self.workers}

        def idle() -> bool:
            return {w.pid for w in Worker.all(connection=self.store.redis) if w.get_state() == "idle"} >= pids

        assert wait_for(idle, timeout, interval=0.1), f"workers did not come up: see {self.tmp}/machine-*/worker.log"

    def commit(self, app: str, version: str, restart: str = "", start_period: str = "",
               **kwargs: bool | float) -> str:
        files = sample_app_files(self.tmp / app, version, restart, start_period,
                                 publish_ip=self.apps[app].publish_ip, **kwargs)
        return self.apps[app].origin.commit(f"release {version}", files)

    def push(self, app: str, sha: str, before: str | None = None) -> str:
        """GitHub's push webhook for `sha` on the app's main; returns the queued deployment's id."""
        hook = github_request(github_push(repo=f"acme/{app}", after=sha, before=before), SECRET)
        resp = self.client.open("/hooks/github", **hook.client_kwargs())
        assert resp.status_code == 202, resp.json
        return str(resp.json["deployments"][0]["id"])

    def log(self, deployment_id: str) -> list[str]:
        return self.store.logs.read(deployment_id)[0]

    def wait(self, deployment_id: str, timeout: float = DEPLOY_TIMEOUT) -> Deployment:
        assert wait_for(lambda: self.store.get(deployment_id).state.is_final, timeout, interval=0.1), (
            f"deployment {deployment_id} did not end: " + "\n".join(self.log(deployment_id)[-30:])
        )
        return self.store.get(deployment_id)

    def wait_for_log(self, deployment_id: str, text: str, timeout: float = DEPLOY_TIMEOUT) -> None:
        assert wait_for(lambda: any(text in line for line in self.log(deployment_id)), timeout, interval=0.05), (
            f"deployment {deployment_id} never logged {text!r}: " + "\n".join(self.log(deployment_id)[-30:])
        )

    def machines_that_ran(self, app: str, sha: str) -> list[int]:
        """Which "machines" checked out `sha` of `app`: each one's release lands in its own state_dir."""
        return sorted(int(m.name.removeprefix("machine-")) for m in self.tmp.glob("machine-*")
                      if (m / "state" / "releases" / app / sha).is_dir())

    def stop(self) -> None:
        stop_process_groups(self.workers, grace=15)
        self.workers.clear()


@contextlib.contextmanager
def open_fleet(tmp: Path, make_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis, redis_url: str,
               engines: Mapping[str, tuple[str | None, docker.DockerClient]],
               addresses: Mapping[str, str] | None = None) -> Iterator[Fleet]:
    """A Fleet of sample apps, app name -> (docker_host, a client of that engine), with a checking git
    host; afterwards the workers stop and each app's project is removed from its engine. `addresses`
    names the address an app's engine machine publishes on, when it is not 127.0.0.1."""
    started = int(time.time())
    specs = [FleetApp(name, make_origin(name), f"hsf{name}{uuid.uuid4().hex[:8]}", host,
                      publish_ip=(addresses or {}).get(name, "127.0.0.1"))
             for name, (host, _) in engines.items()]
    with FakeGitHost(tokens={"github": GH_TOKEN}) as git_host:
        fleet = Fleet(tmp, specs, git_host.url, redis, redis_url)
        try:
            yield fleet
        finally:
            fleet.stop()
            for spec in specs:
                remove_project(engines[spec.name][1], spec.project, images_since=started)

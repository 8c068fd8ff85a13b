"""Stopping `hooksvc run` and `hooksvc worker`: in order, quickly when idle, never cutting a deployment
by accident.

The signals are sent as a terminal sends Ctrl-C (SIGINT to the whole foreground process group) and
as a service manager stops a service (SIGTERM to the main process only). Everything is real: the
processes, their private redis-server, the Docker engine, git; the git host's status API is the
checking stand-in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc import defaults, keys
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.jobqueue import workers_alive
from hooksvc.store import DeploymentStore
from tests.helpers.config import write_config
from tests.helpers.docker import get_text, wait_for
from tests.helpers.fake_git_host import FakeGitHost
from tests.helpers.fleet import GH_TOKEN, Fleet, FleetApp, open_fleet, sample_app_files
from tests.helpers.fleet import SECRET as FLEET_SECRET
from tests.helpers.git import GitOrigin
from tests.helpers.redis_server import RedisServer, free_port

CLI = [sys.executable, "-m", "hooksvc.cli"]
#: The contract: an idle `hooksvc run` or `hooksvc worker` is gone, every process of it, within this.
IDLE_STOP_SECONDS = 2.0
#: A deployment of the sample app (a build, a health gate of a few seconds) on a loaded machine.
DEPLOY_TIMEOUT = 180.0
#: The new release boots this long before it answers its healthcheck: the rollout sits in its health
#: gate meanwhile, which is when the tests stop hooksvc.
SLOW_BOOT_SECONDS = 8.0


def process_tree(pid: int) -> set[int]:
    """`pid` and every process descended from it (a worker's work horse and its compose commands too)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {pid}, True
    while grew:
        found = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return tree


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_all_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until none of `pids` runs; returns those still running after `timeout`."""
    wait_for(lambda: not any(running(p) for p in pids), timeout, interval=0.02)
    return {p for p in pids if running(p)}


def kill_tree(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Run:
    """`hooksvc run --workers 1` on a config without `[redis]` (so with its private redis-server),
    in a session of its own as a terminal's job is; its output in `run.log`."""

    def __init__(self, tmp: Path, config: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.config = config
        self.env = env
        self.sock = tmp / "state" / "redis" / "redis.sock"
        self.log = tmp / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def start(self, port: int) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*CLI, "--config", str(self.config), "run", "--workers", "1"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        assert wait_for(lambda: get_text(f"http://127.0.0.1:{port}/healthz")[0] == 200, 90), self.output()
        assert wait_for(lambda: len(self.workers()) == 1, 60), self.output()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def store(self) -> DeploymentStore:
        return DeploymentStore(redis_lib.Redis(unix_socket_path=str(self.sock)))

    def workers(self) -> list[int]:
        try:
            return [w.pid for w in workers_alive(self.store().queue)]
        except redis_lib.ConnectionError:
            return []

    def tree(self) -> set[int]:
        """Every process of this run now (the private redis-server included); remembered for `cleanup`."""
        pids = process_tree(self.pid)
        self.seen |= pids
        return pids

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, how: str) -> None:
        """Ask for a stop as a terminal's Ctrl-C does (SIGINT to the process group) or as a service
        manager does (SIGTERM to the main process only)."""
        if how == "terminal":
            os.killpg(self.pid, signal.SIGINT)
        else:
            os.kill(self.pid, signal.SIGTERM)

    def cleanup(self) -> None:
        """Kill whatever a failed test left running."""
        if self.proc is not None:
            kill_tree(self.seen | process_tree(self.pid))
            self.proc.wait(timeout=10)


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if "WARNING" in line or "Traceback" in line]


def read_after_stop(state_dir: Path, deployment_id: str) -> tuple[Deployment, list[str]]:
    """A deployment's record and log as the private Redis kept them on disk after `hooksvc run` stopped."""
    server = RedisServer(state_dir / "redis")
    server.start()
    try:
        store = DeploymentStore(redis_lib.Redis(port=server.port))
        return store.get(deployment_id), store.logs.read(deployment_id)[0]
    finally:
        server.stop()


class TestIdleStop:
    @pytest.mark.parametrize("how", ["terminal", "service manager"])
    def test_an_idle_run_is_gone_within_two_seconds_without_a_warning(self, tmp_path: Path, how: str) -> None:
        """Ctrl-C to the process group, or SIGTERM to the main process alone: the web server, the
        worker, the private redis-server and `hooksvc run` are all gone within 2 s, and nothing warns."""
        port = free_port()
        env = {**os.environ, "SHOP_SECRET": "s"}
        env.pop("REDIS_URL", None)
        run = Run(tmp_path, write_config(tmp_path, redis_url=None, port=port), env)
        try:
            run.start(port)
            before = run.tree()
            assert len(before) >= 5, before  # run, redis-server, gunicorn's arbiter and its workers, worker
            started = time.monotonic()
            run.stop(how)
            left = wait_all_gone(before, IDLE_STOP_SECONDS)
            took = time.monotonic() - started
            assert not left, f"still running {took:.2f}s after the signal: {sorted(left)}\n{run.output()[-3000:]}"
            assert run.proc is not None and run.proc.wait(timeout=5) == 0
            print(f"idle `hooksvc run` stopped by {how}: every process gone in {took:.2f}s")
            assert not warnings_in(run.output()), warnings_in(run.output())
            assert not run.sock.exists()
            assert get_text(f"http://127.0.0.1:{port}/healthz")[0] == 0
        finally:
            run.cleanup()


class TestWorkerList:
    def test_a_stopped_worker_leaves_the_list_at_once_and_a_silent_one_within_its_heartbeat(
        self, tmp_path: Path, redis: redis_lib.Redis, redis_url: str
    ) -> None:
        """An idle `hooksvc worker` stops within 2 s of SIGTERM and is no longer listed once it is gone;
        one whose heartbeat stopped (killed) drops out of the list `WORKER_GONE_SECONDS` later."""
        config = write_config(tmp_path, redis_url=redis_url)
        env = {**os.environ, "SHOP_SECRET": "s"}
        env.pop("REDIS_URL", None)
        store = DeploymentStore(redis)
        proc = subprocess.Popen([*CLI, "--config", str(config), "worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            assert wait_for(lambda: [w.pid for w in workers_alive(store.queue)] == [proc.pid], 60)
            now = datetime.now(UTC)
            assert [w.pid for w in workers_alive(store.queue, now=now)] == [proc.pid]
            silent = now + timedelta(seconds=defaults.WORKER_HEARTBEAT_SECONDS + defaults.WORKER_GONE_SECONDS)
            assert workers_alive(store.queue, now=silent) == []

            tree = process_tree(proc.pid)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            left = wait_all_gone(tree, IDLE_STOP_SECONDS)
            took = time.monotonic() - started
            assert not left, f"still running {took:.2f}s after SIGTERM: {sorted(left)}"
            print(f"idle `hooksvc worker` stopped by SIGTERM in {took:.2f}s")
            assert proc.wait(timeout=5) == 0
            assert workers_alive(store.queue) == []
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            assert not warnings_in(stderr), stderr
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class App:
    """The sample app `web` on a git origin, deployed by a `hooksvc run` on a config with its private Redis."""

    def __init__(self, tmp: Path, origin: GitOrigin, project: str, host: FakeGitHost) -> None:
        self.tmp = tmp
        self.origin = origin
        self.project = project
        self.host = host
        self.port = free_port()
        self.state_dir = tmp / "state"
        config = tmp / "hooksvc.toml"
        config.write_text(textwrap.dedent(f"""
            [server]
            listen = "127.0.0.1:{self.port}"
            public_url = "http://deploy.test"
            [worker]
            state_dir = "{self.state_dir}"
            keep_releases = 2
            [hosts.github]
            kind = "github"
            api_url = "{host.url}/github"
            token_env = "GH_TOKEN"
        """) + FleetApp("web", origin, project, health_timeout="60s").section(host.url))
        env = {**os.environ, "FLEET_SECRET": FLEET_SECRET, "GH_TOKEN": GH_TOKEN}
        env.pop("REDIS_URL", None)
        self.run = Run(tmp, config, env)

    def commit(self, version: str, boot_seconds: float = 1.0) -> str:
        # A start period longer than the boot: the new container stays `starting`, never `unhealthy`.
        files = sample_app_files(self.tmp, version, start_period="60s", boot_seconds=boot_seconds)
        return self.origin.commit(f"release {version}", files)

    def deploy(self, sha: str) -> str:
        """`hooksvc deploy web --sha SHA`; the queued deployment's id."""
        result = subprocess.run([*CLI, "--config", str(self.run.config), "deploy", "web", "--sha", sha],
                                env=self.run.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.split("deployment ", 1)[1].split(" ", 1)[0]

    def wait(self, deployment_id: str) -> Deployment:
        store = self.run.store()
        assert wait_for(lambda: store.get(deployment_id).state.is_final, DEPLOY_TIMEOUT), (
            "\n".join(store.logs.read(deployment_id)[0][-30:]))
        return store.get(deployment_id)

    def wait_for_log(self, deployment_id: str, text: str) -> None:
        store = self.run.store()
        assert wait_for(lambda: any(text in line for line in store.logs.read(deployment_id)[0]),
                        DEPLOY_TIMEOUT, interval=0.1), "\n".join(store.logs.read(deployment_id)[0][-30:])

    def web_containers(self, client: docker.DockerClient) -> list[str]:
        return [c.name for c in client.containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={self.project}", "com.docker.compose.service=web"]})]

    def start_slow_rollout(self) -> tuple[str, str]:
        """v1 live, then v2 (slow to boot) deployed until its rollout waits in the health gate: (v2's sha, id)."""
        self.run.start(self.port)
        v1 = self.commit("v1")
        assert self.wait(self.deploy(v1)).state is DeploymentState.SUCCEEDED
        v2 = self.commit("v2", boot_seconds=SLOW_BOOT_SECONDS)
        d2 = self.deploy(v2)
        self.wait_for_log(d2, "to be healthy")
        return v2, d2


@pytest.fixture
def app(tmp_path: Path, make_git_origin: object, compose_project: str, base_image: str) -> Iterator[App]:
    with FakeGitHost(tokens={"github": GH_TOKEN}) as host:
        a = App(tmp_path, make_git_origin("web"), compose_project, host)  # type: ignore[operator]
        try:
            yield a
        finally:
            a.run.cleanup()


@pytest.mark.docker
@pytest.mark.parametrize("how", ["terminal", "service manager"])
class TestStopDuringADeployment:
    def test_one_signal_waits_for_the_deployment_and_says_so(self, app: App, how: str) -> None:
        """One stop signal mid-rollout: `hooksvc run` names the deployment it waits for, the deployment
        ends `succeeded` with its commit status sent, then every process exits; Redis stopped last."""
        v2, d2 = app.start_slow_rollout()
        tree = app.run.tree()
        started = time.monotonic()
        app.run.stop(how)
        assert app.run.proc is not None and app.run.proc.wait(timeout=DEPLOY_TIMEOUT) == 0
        output = app.run.output()
        assert f"waiting for deployment {d2} of web to finish (Ctrl-C again to stop at once)" in output, output
        assert wait_all_gone(tree, 10) == set()
        done, log = read_after_stop(app.state_dir, d2)
        assert done.state is DeploymentState.SUCCEEDED, (done.error, log[-20:])
        assert app.host.statuses("github", v2, "hooksvc/web")[-1:] == ["success"]
        assert not warnings_in(output), warnings_in(output)
        print(f"`hooksvc run` stopped by {how} mid-rollout: exited {time.monotonic() - started:.1f}s later, "
              "once the deployment had succeeded")

    def test_a_second_signal_cuts_the_deployment_and_the_next_start_cleans_up(
        self, app: App, how: str, docker_client: docker.DockerClient
    ) -> None:
        """Two stop signals mid-rollout: the work horse and its commands die with the worker, the deployment
        ends `error` naming the cold stop, and after the next start the next rollout removes what it left."""
        _, d2 = app.start_slow_rollout()
        tree = app.run.tree()
        app.run.stop(how)
        assert wait_for(lambda: f"waiting for deployment {d2}" in app.run.output(), 30), app.run.output()
        tree |= app.run.tree()
        started = time.monotonic()
        app.run.stop(how)
        assert app.run.proc is not None and app.run.proc.wait(timeout=60) == 0
        assert wait_all_gone(tree, 10) == set(), app.run.output()[-3000:]
        print(f"`hooksvc run` stopped at once by a second {how} signal mid-rollout: every process gone "
              f"{time.monotonic() - started:.1f}s later")
        cut, log = read_after_stop(app.state_dir, d2)
        assert cut.state is DeploymentState.ERROR and "worker stopped (cold)" in cut.error, (cut.error, log[-20:])
        assert len(app.web_containers(docker_client)) == 2  # v1 serving, and the new one the rollout started

        app.run.start(app.port)
        assert app.run.store().redis.get(keys.app_lock("web")) is None
        v3 = app.commit("v3")
        d3 = app.wait(app.deploy(v3))
        assert d3.state is DeploymentState.SUCCEEDED, d3.error
        log3 = app.run.store().logs.read(d3.id)[0]
        assert any("left-over container(s) of an interrupted rollout" in line for line in log3), log3
        # The stopped old container is removed once the deployment is recorded (the job's upkeep).
        assert wait_for(lambda: len(app.web_containers(docker_client)) == 1, 20), app.web_containers(docker_client)


@pytest.mark.docker
class TestWorkerStopDuringADeployment:
    def test_sigterm_lets_the_deployment_finish_then_the_worker_exits(
        self, tmp_path: Path, make_git_origin: object, redis: redis_lib.Redis, redis_url: str,
        base_image: str, docker_client: docker.DockerClient,
    ) -> None:
        """`hooksvc worker` given SIGTERM mid-rollout (as `docker compose stop` sends it) finishes the
        deployment, `succeeded`, then exits and leaves the worker list."""
        with open_fleet(tmp_path, make_git_origin, redis, redis_url,  # type: ignore[arg-type]
                        {"web": (None, docker_client)}) as fleet:
            worker = fleet.start_worker()
            fleet.wait_until_idle()
            assert fleet.wait(fleet.push("web", commit(fleet, "v1"))).state is DeploymentState.SUCCEEDED
            d2 = fleet.push("web", commit(fleet, "v2", boot_seconds=SLOW_BOOT_SECONDS))
            fleet.wait_for_log(d2, "to be healthy")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=DEPLOY_TIMEOUT) == 0
            assert fleet.store.get(d2).state is DeploymentState.SUCCEEDED, fleet.store.get(d2).error
            assert workers_alive(fleet.store.queue) == []


def commit(fleet: Fleet, version: str, boot_seconds: float = 1.0) -> str:
    return fleet.commit("web", version, start_period="60s", boot_seconds=boot_seconds)

"""The command line as operators use it: `hooksvc run` and `hooksvc check-config`, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from hooksvc import defaults, keys
from hooksvc.cli import wait_for_deployment
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL, write_config
from tests.helpers.docker import get_text, wait_for
from tests.helpers.redis_server import free_port

CLI = [sys.executable, "-m", "hooksvc.cli"]


def env_without_redis() -> dict[str, str]:
    env = {**os.environ, "SHOP_SECRET": "s"}
    env.pop("REDIS_URL", None)
    return env


def cli(config: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One `hooksvc` command with `config`, as an operator runs it."""
    return subprocess.run([*CLI, "--config", str(config), *argv], env=env_without_redis(),
                          capture_output=True, text=True, timeout=timeout)


class TestRun:
    def test_run_starts_private_redis_web_and_workers_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """Without a configured Redis, `hooksvc run` starts its own, serves, and stops it all on SIGTERM."""
        port = free_port()
        config = write_config(tmp_path, redis_url=None, port=port)
        proc = subprocess.Popen([*CLI, "--config", str(config), "run", "--workers", "1"], env=env_without_redis(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            assert wait_for(lambda: get_text(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30)
            assert (tmp_path / "state" / "redis" / "redis.sock").exists()
            assert wait_for(lambda: _workers_registered(tmp_path / "state" / "redis" / "redis.sock") == 1, 20)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.5)
        assert get_text(f"http://127.0.0.1:{port}/healthz")[0] == 0
        assert not (tmp_path / "state" / "redis" / "redis.sock").exists()


def _workers_registered(sock: Path) -> int:
    import redis
    from rq import Worker

    try:
        return len(Worker.all(connection=redis.Redis(unix_socket_path=str(sock))))
    except redis.ConnectionError:
        return -1


class TestCheckConfig:
    def test_reachable_services_pass(self, tmp_path: Path, redis_url: str) -> None:
        """check-config with Redis, Docker, compose and git reachable exits 0 and says ok for each."""
        config = write_config(tmp_path, redis_url=TEST_REDIS_URL)
        result = subprocess.run([*CLI, "--config", str(config), "check-config"], env=env_without_redis(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        for name in ("redis", "git", "docker (local)", "compose"):
            assert any(line.strip().startswith(name) and line.rstrip().endswith("ok")
                       for line in result.stdout.splitlines()), result.stdout

    def test_unreachable_redis_fails(self, tmp_path: Path) -> None:
        """check-config names an unreachable Redis and exits 1."""
        config = write_config(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
        result = subprocess.run([*CLI, "--config", str(config), "check-config"], env=env_without_redis(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "redis" in result.stdout and "FAILED" in result.stdout


@pytest.mark.parametrize("argv", [["status"], ["logs", "999"]])
def test_commands_report_redis_outage_clearly(tmp_path: Path, argv: list[str]) -> None:
    """With Redis unreachable, operator commands exit 1 with a readable message instead of a traceback."""
    config = write_config(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run([*CLI, "--config", str(config), *argv], env=env_without_redis(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Redis is unreachable" in result.stderr and "Traceback" not in result.stderr


class TestTheRedisOfRun:
    def test_commands_with_runs_config_reach_its_private_redis_not_the_default_one(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """With no [redis], `deploy`, `status` and `logs` given `run`'s config use the redis-server `run`
        started, although another one listens on the default port; `status` shows workers and the queue."""
        port = free_port()
        config = write_config(tmp_path, redis_url=None, port=port)
        default = redis_lib.Redis(host="127.0.0.1", port=6379, db=0)
        before = default.get(keys.NEXT_ID)
        proc = subprocess.Popen([*CLI, "--config", str(config), "run", "--workers", "0"], env=env_without_redis(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            assert wait_for(lambda: get_text(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30)
            sock = tmp_path / "state" / "redis" / "redis.sock"
            assert (tmp_path / "state" / "redis" / "address").read_text().strip() == f"unix://{sock}?db=0"

            deploy = cli(config, "deploy", "shop", "--sha", "a" * 40)
            assert deploy.returncode == 0 and "deployment 1 of shop queued" in deploy.stdout, deploy.stderr
            status = cli(config, "status")
            assert status.returncode == 0, status.stderr
            assert "#1" in status.stdout and "0 worker(s) alive, 1 deployment(s) waiting in the queue" in status.stdout
            logs = cli(config, "logs", "1")
            assert "queued manual of " + "a" * 40 in logs.stdout, logs.stdout + logs.stderr
            private = redis_lib.Redis(unix_socket_path=str(sock))
            assert private.exists(keys.deployment("1"))
            assert default.get(keys.NEXT_ID) == before, "a deployment went to the Redis on the default port"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=40)
        assert not (tmp_path / "state" / "redis" / "address").exists()

    def test_a_recorded_private_redis_that_is_gone_is_named_not_replaced(self, tmp_path: Path) -> None:
        """When `run`'s recorded Redis does not answer, commands say so and exit 1; they do not use another."""
        config = write_config(tmp_path, redis_url=None)
        record = tmp_path / "state" / "redis" / "address"
        record.parent.mkdir(parents=True)
        record.write_text(f"unix://{tmp_path / 'state' / 'redis' / 'redis.sock'}?db=0\n")
        result = cli(config, "status")
        assert result.returncode == 1
        assert "the private redis-server that `hooksvc run` started for it" in result.stderr
        assert "is not running" in result.stderr and "Traceback" not in result.stderr

    def test_wait_with_no_worker_warns_and_gives_up_at_its_bound(
        self, tmp_path: Path, redis_url: str, redis: redis_lib.Redis
    ) -> None:
        """`deploy --wait` with no worker alive says so at once and again while it waits, then ends non-zero
        once the job timeout plus the margin has passed."""
        config = write_config(tmp_path, redis_url=redis_url, job_timeout="1s")
        started = time.monotonic()
        result = cli(config, "deploy", "shop", "--sha", "b" * 40, "--wait", timeout=120)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: no worker")]
        assert len(warnings) >= 2, result.stdout
        assert "stopped waiting" in result.stdout, result.stdout
        assert result.stdout.index("warning: no worker") < result.stdout.index("stopped waiting")
        assert 1 + defaults.WAIT_MARGIN_SECONDS <= elapsed < 1 + defaults.WAIT_MARGIN_SECONDS + 20


#: Build output that would retitle the operator's terminal window, clear its screen and overwrite a line.
HOSTILE_OUTPUT = "step 1/2\x1b]0;owned\x07 done\rFAKE: deployment succeeded\x1b[2J\x9b31m\tkept tab"
#: The characters a terminal acts on (tab excepted, which it only shows as space).
TERMINAL_CONTROLS = {chr(c) for c in [*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]}


class TestLogs:
    def _running_deployment(self, redis: redis_lib.Redis) -> tuple[DeploymentStore, str]:
        store = DeploymentStore(redis)
        dep = store.intake.submit([NewDeployment("shop", "a" * 40, "refs/heads/main", Trigger.MANUAL)]).deployments[0]
        assert store.start(dep.id, previous_sha="") is not None
        return store, dep.id

    def test_logs_and_status_escape_control_characters_of_build_output(
        self, tmp_path: Path, redis: redis_lib.Redis
    ) -> None:
        """`hooksvc logs` and `hooksvc status APP` show build output's escape sequences written out, never
        as bytes the operator's terminal would act on."""
        store, deployment_id = self._running_deployment(redis)
        store.logs.append(deployment_id, HOSTILE_OUTPUT)
        store.finish(deployment_id, DeploymentState.FAILED, "build failed\x1b]0;owned\x07")
        config = write_config(tmp_path, redis_url=TEST_REDIS_URL)

        logs = cli(config, "logs", deployment_id)
        status = cli(config, "status", "shop")

        assert logs.returncode == 0 and status.returncode == 0, logs.stderr + status.stderr
        for out in (logs.stdout, status.stdout):
            assert not TERMINAL_CONTROLS & set(out.replace("\n", "")), repr(out)
        assert "step 1/2\\x1b]0;owned\\x07 done\\x0dFAKE: deployment succeeded\\x1b[2J\\x9b31m\tkept tab" in logs.stdout
        assert "finished: failed: build failed\\x1b]0;owned\\x07" in logs.stdout
        assert "build failed\\x1b]0;owned" in status.stdout

    def test_logs_follow_escapes_lines_as_they_come(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """`hooksvc logs --follow` escapes a line written while it follows."""
        store, deployment_id = self._running_deployment(redis)
        config = write_config(tmp_path, redis_url=TEST_REDIS_URL)
        follow = subprocess.Popen([*CLI, "--config", str(config), "logs", deployment_id, "--follow"],
                                  env=env_without_redis(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)  # following by now: the line below arrives while it waits
            store.logs.append(deployment_id, HOSTILE_OUTPUT)
            store.finish(deployment_id, DeploymentState.FAILED, "build failed\x1b]0;owned\x07")
            out, err = follow.communicate(timeout=30)
        finally:
            follow.kill()
            follow.wait()
        assert follow.returncode == 0, err
        assert not TERMINAL_CONTROLS & set(out.replace("\n", "")), repr(out)
        assert "\\x1b]0;owned\\x07 done\\x0dFAKE" in out and "finished: failed: build failed\\x1b]0;owned" in out

    def test_wait_escapes_the_log_and_the_outcome(self, redis: redis_lib.Redis) -> None:
        """`deploy --wait` and the git hook's `--wait` (which a `git push` shows) print the log and the error
        escaped."""
        store, deployment_id = self._running_deployment(redis)
        store.logs.append(deployment_id, HOSTILE_OUTPUT)
        store.finish(deployment_id, DeploymentState.FAILED, "build failed\x1b]0;owned\x07")
        said: list[str] = []
        assert wait_for_deployment(store, deployment_id, 10, said.append) == 1
        assert not TERMINAL_CONTROLS & set("".join(said)), said
        assert said[-1] == f"deployment {deployment_id}: failed: build failed\\x1b]0;owned\\x07"

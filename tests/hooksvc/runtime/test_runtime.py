"""The composition root: a process's background threads, and `hooksvc worker --burst`, against real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis as redis_lib

from hooksvc import keys
from hooksvc.config import Config, parse_config
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.runtime.base import Runtime
from hooksvc.runtime.worker import WorkerRuntime
from hooksvc.store import DeploymentStore
from hooksvc.web import create_app
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.docker import wait_for
from tests.helpers.payloads import commit_sha, github_push, github_request

SECRET = "shop-burst-secret"
ENV = {"SHOP_SECRET": SECRET, "REDIS_URL": TEST_REDIS_URL}


def write_config(tmp_path: Path, keep_deployments: int = 200) -> tuple[Path, Config]:
    """A config file on disk (for a worker process) and the same config parsed (for the web app)."""
    path = tmp_path / "hooksvc.toml"
    path.write_text(textwrap.dedent(f"""
        [worker]
        state_dir = "{tmp_path / 'state'}"
        keep_deployments = {keep_deployments}
        [hosts.gh]
        kind = "github"
        api_url = "http://127.0.0.1:9"
        [apps.shop]
        host = "gh"
        repo = "acme/shop"
        clone_url = "{tmp_path / 'no-such-origin.git'}"
        secret_env = "SHOP_SECRET"
    """))
    return path, parse_config(path.read_text(), str(path), ENV)


def queue_by_webhook(config: Config, redis: redis_lib.Redis) -> str:
    """A signed push answered by the web app: recorded and waiting in the intake, no RQ job yet."""
    client = create_app(config, connection=redis).test_client()
    resp = client.open("/hooks/github", **github_request(github_push(after=commit_sha(7)), SECRET).client_kwargs())
    assert resp.status_code == 202, resp.get_data(as_text=True)
    deployment_id: str = resp.get_json()["deployments"][0]["id"]
    assert redis.llen(keys.INTAKE) == 1
    return deployment_id


class TestBurstWorker:
    def test_a_burst_worker_dispatches_waiting_webhooks_before_it_drains_the_queue(
        self, tmp_path: Path, redis: redis_lib.Redis
    ) -> None:
        """A webhook waiting in the intake when `worker --burst` starts is run to a final state, not left queued."""
        path, config = write_config(tmp_path)
        deployment_id = queue_by_webhook(config, redis)
        store = DeploymentStore(redis)
        assert store.get(deployment_id).state is DeploymentState.QUEUED and store.queue.count == 0

        result = subprocess.run(
            [sys.executable, "-m", "hooksvc.cli", "--config", str(path), "worker", "--burst"],
            env={**os.environ, **ENV}, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        done = store.get(deployment_id)
        # The origin does not exist, so the deployment fails at its fetch: what matters is that it ran.
        assert done.state is DeploymentState.FAILED, (done.state, done.error)
        assert redis.llen(keys.INTAKE) == 0 and redis.llen(keys.INTAKE_PROCESSING) == 0


class TestRuntime:
    def test_a_worker_runtime_turns_waiting_webhooks_into_jobs_and_stops(
        self, tmp_path: Path, redis: redis_lib.Redis
    ) -> None:
        """The worker's intake dispatcher thread queues the RQ job of a waiting webhook; `stop()` ends its threads."""
        _, config = write_config(tmp_path)
        deployment_id = queue_by_webhook(config, redis)
        runtime = WorkerRuntime(config, redis)
        runtime.start()
        try:
            assert {t.name for t in runtime.threads} == {
                "hooksvc-reaper", "hooksvc-janitor", "hooksvc-intake", "hooksvc-outbox"}
            assert wait_for(lambda: runtime.store.queue.job_ids == [f"deploy-{deployment_id}"], 10)
            assert redis.llen(keys.INTAKE) == 0
        finally:
            runtime.stop()
        assert not any(t.is_alive() for t in runtime.threads)

    def test_a_worker_runtime_trims_old_deployments_to_keep_deployments(
        self, tmp_path: Path, redis: redis_lib.Redis
    ) -> None:
        """The worker's janitor deletes finished deployments beyond `[worker] keep_deployments`."""
        _, config = write_config(tmp_path, keep_deployments=2)
        store = DeploymentStore(redis)
        for n in range(5):
            dep = store.intake.submit([NewDeployment("shop", commit_sha(n), "refs/heads/main", Trigger.PUSH)])
            store.finish(dep.deployments[0].id, DeploymentState.FAILED)
        runtime = WorkerRuntime(config, redis)
        runtime.start()
        try:
            assert wait_for(lambda: len(store.recent(app="shop")) == 2, 15)
        finally:
            runtime.stop()
        assert [d.sha for d in store.recent(app="shop")] == [commit_sha(4), commit_sha(3)]

    def test_a_web_runtime_runs_the_reaper_only(self, tmp_path: Path, redis: redis_lib.Redis) -> None:
        """A web process's runtime reaps abandoned deployments and turns no intake into jobs (that is the workers')."""
        _, config = write_config(tmp_path)
        deployment_id = queue_by_webhook(config, redis)
        runtime = Runtime(config, redis)
        runtime.start()
        try:
            assert [t.name for t in runtime.threads] == ["hooksvc-reaper"]
            time.sleep(0.5)
            assert redis.llen(keys.INTAKE) == 1
            assert runtime.store.get(deployment_id).state is DeploymentState.QUEUED
        finally:
            runtime.stop()
        assert not any(t.is_alive() for t in runtime.threads)

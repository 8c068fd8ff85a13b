"""A real `hooksvc worker` whose work horse is killed before its deployment starts: RQ records the job
failed, and the janitor ends the deployment `error` with that reason (real Redis, RQ and processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis as redis_lib
from rq.job import Job

from hooksvc import keys
from hooksvc.connection import connect
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.jobqueue import job_id_for
from hooksvc.recovery import recover_stranded
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL, write_config
from tests.helpers.docker import wait_for
from tests.helpers.processes import stop_process_groups


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_a_work_horse_killed_before_the_deployment_starts_ends_it_error(
    tmp_path: Path, redis: redis_lib.Redis
) -> None:
    """The job waits for an app lock someone else holds; its work horse is SIGKILLed; the deployment, never
    started, ends `error` naming the failed job instead of staying queued."""
    config = write_config(tmp_path, TEST_REDIS_URL)
    store = DeploymentStore(connect(TEST_REDIS_URL))
    redis.set(keys.app_lock("shop"), "another-deployment")  # the job waits in front of the lock
    manual = NewDeployment("shop", "c" * 40, "refs/heads/main", Trigger.MANUAL, forced=True)
    dep = store.intake.submit([manual]).deployments[0]
    worker = subprocess.Popen([sys.executable, "-m", "hooksvc.cli", "--config", str(config), "worker"],
                              env={**os.environ, "SHOP_SECRET": "s"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        job = Job.fetch(job_id_for(dep.id), connection=redis)
        assert wait_for(lambda: job.get_status(refresh=True) == "started" and children_of(worker.pid), 30)
        for horse in children_of(worker.pid):
            os.kill(horse, signal.SIGKILL)
        assert wait_for(lambda: job.get_status(refresh=True) == "failed", 30)
        assert store.get(dep.id).state is DeploymentState.QUEUED  # what was left behind before the janitor
        [(ended, what)] = recover_stranded(store, ["shop"], older_than=0)
    finally:
        stop_process_groups([worker], grace=15)
    assert what == "ended" and ended.state is DeploymentState.ERROR
    assert ended.error == "never started: its job ended failed before the deployment started"

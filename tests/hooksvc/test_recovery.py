"""Stranded queued deployments — their job deleted, failed, or taken by a worker that vanished — are
re-queued or ended, against a real Redis and RQ's own records."""

from __future__ import annotations

import redis as redis_lib
from rq.job import Job

from hooksvc import keys
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.jobqueue import job_id_for
from hooksvc.recovery import recover_stranded
from hooksvc.store import DeploymentStore

SHA = "a" * 40


def queued(store: DeploymentStore) -> Deployment:
    return store.intake.submit([NewDeployment("shop", SHA, "refs/heads/main", Trigger.PUSH)]).deployments[0]


class TestRecoverStranded:
    def test_a_deployment_whose_job_was_deleted_is_queued_again(
        self, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """A queued deployment whose RQ job vanished gets its job back, and its log says why."""
        dep = queued(store)
        Job.fetch(job_id_for(dep.id), connection=redis).delete()
        assert store.queue.job_ids == []
        assert recover_stranded(store, ["shop"], older_than=0) == [(dep, "requeued")]
        assert store.queue.job_ids == [job_id_for(dep.id)]
        assert store.get(dep.id).state is DeploymentState.QUEUED
        assert "re-queued: its job is gone from the queue" in store.logs.read(dep.id)[0]
        assert recover_stranded(store, ["shop"], older_than=0) == []  # its job is alive again

    def test_a_deployment_whose_job_failed_before_it_started_ends_error(
        self, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """A job RQ marked failed (its work horse killed) leaves the deployment queued; it ends error, named."""
        dep = queued(store)
        job = Job.fetch(job_id_for(dep.id), connection=redis)
        job.set_status("failed")
        [(ended, what)] = recover_stranded(store, ["shop"], older_than=0)
        assert what == "ended" and ended.state is DeploymentState.ERROR
        assert ended.error == "never started: its job ended failed before the deployment started"
        assert store.queued_id("shop") is None

    def test_a_job_taken_by_a_worker_that_vanished_ends_its_deployment(
        self, store: DeploymentStore, redis: redis_lib.Redis
    ) -> None:
        """A started job whose worker is no longer registered (killed before the deployment started) ends it."""
        dep = queued(store)
        job = Job.fetch(job_id_for(dep.id), connection=redis)
        job.worker_name = "gone-worker"
        job.save()
        job.set_status("started")
        [(ended, _)] = recover_stranded(store, ["shop"], older_than=0)
        assert "worker gone-worker, which took its job, is gone" in ended.error

    def test_fresh_and_alive_deployments_are_left_alone(self, store: DeploymentStore, redis: redis_lib.Redis) -> None:
        """A deployment younger than the grace, or whose job waits in the queue, is not touched."""
        dep = queued(store)
        assert recover_stranded(store, ["shop"]) == []  # queued a moment ago
        assert recover_stranded(store, ["shop"], older_than=0) == []  # its job waits in the queue
        Job.fetch(job_id_for(dep.id), connection=redis).delete()
        assert recover_stranded(store, ["shop"]) == []  # still within the grace
        assert redis.get(keys.app_queued("shop")) == dep.id.encode()

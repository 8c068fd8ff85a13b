"""The RQ queue deployments run on: one job per deployment, named after it.

The job is named by string, so the web side never imports the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

from hooksvc import defaults
from hooksvc.deployments import Deployment

#: The RQ job every deployment runs as.
DEPLOY_JOB = "workers.jobs.run_deployment"
#: A finished job's result is kept this long (RQ's registries), a failed one for a week.
RESULT_TTL_SECONDS = 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600


def deploy_queue(connection: redis.Redis) -> Queue:
    return Queue(defaults.QUEUE_NAME, connection=connection)


#: A deployment's job id is this and the deployment's id.
DEPLOY_JOB_PREFIX = "deploy-"


def job_id_for(deployment_id: str) -> str:
    return f"{DEPLOY_JOB_PREFIX}{deployment_id}"


def deployment_of_job(job_id: str) -> str:
    """The deployment a job runs, "" for a job that is not a deployment's."""
    return job_id.removeprefix(DEPLOY_JOB_PREFIX) if job_id.startswith(DEPLOY_JOB_PREFIX) else ""


def enqueue_deployment(queue: Queue, pipe: Pipeline, deployment: Deployment, timeout: float) -> None:
    """Queue `deployment`'s job inside the caller's transaction."""
    queue.enqueue_call(
        DEPLOY_JOB,
        args=(deployment.id,),
        job_id=job_id_for(deployment.id),
        timeout=int(timeout),
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        description=f"deploy {deployment.app} {deployment.sha[:12]} (deployment {deployment.id})",
        pipeline=pipe,
    )


def drop_job(queue: Queue, pipe: Pipeline, deployment_id: str) -> None:
    """Take a deployment's job off the queue (it has not started), inside the caller's transaction."""
    pipe.lrem(queue.key, 0, job_id_for(deployment_id))


#: What RQ says of a deployment's job, for the janitor (`hooksvc.recovery`).
JOB_MISSING = "missing"
#: The job will still run or runs now: its deployment is not stranded.
JOB_ALIVE = "alive"
#: The job ended or its worker is gone: its deployment never will start.
JOB_DEAD = "dead"


def job_fate(queue: Queue, deployment_id: str) -> tuple[str, str]:
    """Whether a deployment's job is alive, dead (and why) or missing, as RQ records it."""
    try:
        job = Job.fetch(job_id_for(deployment_id), connection=queue.connection)
    except NoSuchJobError:
        return JOB_MISSING, "its job is gone from the queue"
    status = JobStatus(job.get_status(refresh=False))
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED):
        return JOB_ALIVE, status.value
    if status == JobStatus.STARTED:
        worker = job.worker_name or ""
        if worker and Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker,
                                         connection=queue.connection) is None:
            return JOB_DEAD, f"worker {worker}, which took its job, is gone"
        return JOB_ALIVE, status.value
    return JOB_DEAD, f"its job ended {status.value} before the deployment started"


@dataclass(frozen=True)
class WorkerInfo:
    """A deploy worker as RQ's registry has it: alive while it sends heartbeats (see `workers_alive`)."""

    name: str
    host: str
    pid: int
    #: The deployment its current job runs, "" when idle.
    deployment_id: str


def workers_alive(queue: Queue, now: datetime | None = None) -> list[WorkerInfo]:
    """The workers registered on the deploy queue whose last heartbeat is recent, by name.

    A worker that stops says so to RQ's registry on its way out; a killed one cannot, and RQ keeps
    its entry for minutes. hooksvc's workers beat every `WORKER_HEARTBEAT_SECONDS`, idle or busy,
    so one silent for `WORKER_GONE_SECONDS` is not listed.
    """
    now = now or datetime.now(UTC)
    found = []
    for worker in Worker.all(queue=queue):
        beat = worker.last_heartbeat  # RQ reads it back as an aware UTC time
        if beat is not None and (now - beat).total_seconds() > defaults.WORKER_GONE_SECONDS:
            continue
        found.append(WorkerInfo(
            name=worker.name, host=str(worker.hostname or "?"), pid=int(worker.pid or 0),
            deployment_id=deployment_of_job(worker.get_current_job_id() or ""),
        ))
    return sorted(found, key=lambda w: w.name)

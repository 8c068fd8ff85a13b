"""The RQ queue deployments run on: one job per deployment, named after it.

The job is named by string, so the web side never imports the workers.
"""

from __future__ import annotations

import redis
from redis.client import Pipeline
from rq import Queue

from hooksvc import defaults
from hooksvc.deployments import Deployment

#: The RQ job every deployment runs as.
DEPLOY_JOB = "workers.jobs.run_deployment"
#: A finished job's result is kept this long (RQ's registries), a failed one for a week.
RESULT_TTL_SECONDS = 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600


def deploy_queue(connection: redis.Redis) -> Queue:
    return Queue(defaults.QUEUE_NAME, connection=connection)


def job_id_for(deployment_id: str) -> str:
    return f"deploy-{deployment_id}"


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

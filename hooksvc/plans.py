"""What a deploy of a sha would change, asked of a worker: the web side and the CLI cannot look at
Docker or git, so they queue a plan job (`workers.plan`) on a queue of its own and wait for its answer.

A job that is not taken within the wait expires from the queue (RQ's `ttl`), so a plan nobody
answered never runs late; the answer is kept a minute (`result_ttl`), then Redis drops it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus

from hooksvc import defaults
from hooksvc.connection import call
from hooksvc.errors import BadRequest, Conflict, GatewayTimeout, HooksvcError, NotFound

#: The worker's entry point, named, so the core never imports the deploy side.
PLAN_JOB = "workers.plan.plan_job"
#: How long a plan's answer is kept once given.
RESULT_TTL_SECONDS = 60
#: The errors a plan job may answer with, by HTTP status.
_ERRORS: dict[int, type[HooksvcError]] = {400: BadRequest, 404: NotFound, 409: Conflict}


def plan_queue(connection: redis.Redis) -> Queue:
    return Queue(defaults.PLAN_QUEUE_NAME, connection=connection)


def request_plan(connection: redis.Redis, app: str, sha: str, wait: float = defaults.PLAN_WAIT_SECONDS,
                 poll: float = 0.1) -> dict[str, Any]:
    """A worker's plan of deploying `sha` (the branch head when "") of `app`; GatewayTimeout when no
    worker answered within `wait` seconds, the job's error (BadRequest, NotFound, Conflict) when it refused."""
    queue = plan_queue(connection)
    job: Job = call(queue.enqueue_call, PLAN_JOB, args=(app, sha),
                    timeout=defaults.PLAN_JOB_TIMEOUT_SECONDS, ttl=max(1, math.ceil(wait)),
                    result_ttl=RESULT_TTL_SECONDS, failure_ttl=RESULT_TTL_SECONDS,
                    description=f"plan {app} {sha[:12] or 'head'}")
    deadline = time.monotonic() + wait
    while True:
        try:
            status = call(job.get_status, refresh=True)
        except InvalidJobOperation:  # expired (`ttl`) before any worker took it
            status = None
        if status == JobStatus.FINISHED:
            answer: dict[str, Any] | None = call(job.return_value)
            if answer is None:
                raise HooksvcError(f"the plan of {app} finished without an answer: see the worker's log")
            if "error" in answer:
                raise _ERRORS.get(int(answer.get("status", 500)), HooksvcError)(str(answer["error"]))
            return answer
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            raise HooksvcError(f"the plan of {app} failed on the worker ({status}): see the worker's log")
        if status is None or time.monotonic() >= deadline:
            if status in (JobStatus.QUEUED, None):
                call(queue.remove, job.id)  # not taken: nobody runs it late
            raise GatewayTimeout(f"no worker answered the plan of {app} within {wait:.0f} s: is a `hooksvc "
                                 "worker` running, and are all of them busy deploying?")
        time.sleep(poll)

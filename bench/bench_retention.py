"""Redis memory under a steady stream of webhooks: flat once retention is in force.

Sends N signed-push equivalents through the real intake (`Intake.submit` with a delivery id and a
body hash, as the webhook view does), dispatches them into RQ jobs, runs each deployment to a final
state as a worker would (and drops its finished job, as RQ's result TTL does), and trims every app
to `keep_deployments` as the workers' janitor does. The clock advances `--interval` seconds per
webhook, so dedupe periods come and go as they would over weeks. Reports Redis `used_memory` at each
checkpoint; the target is that it does not grow between 10,000 and 100,000 webhooks.

    .venv/bin/python bench/bench_retention.py [--webhooks 100000] [--apps 5] [--keep 200] [--interval 60]

Runs its own redis-server on a free loopback port (as `bench_webhooks.py` does) and stops it afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
from bench_webhooks import private_redis  # noqa: E402
from rq.job import Job  # noqa: E402

from hooksvc import defaults  # noqa: E402
from hooksvc.counters import count_final_state  # noqa: E402
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger  # noqa: E402
from hooksvc.jobqueue import job_id_for  # noqa: E402
from hooksvc.retention import trim  # noqa: E402
from hooksvc.store import DeploymentStore  # noqa: E402

#: Memory may move by allocator noise; more than this much growth from the first checkpoint is growth.
FLAT_TOLERANCE = 0.10
CHECKPOINTS = (10_000, 100_000)
#: The janitor trims every few seconds; at bench speed that is every this many webhooks.
TRIM_EVERY = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--webhooks", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--keep", type=int, default=defaults.KEEP_DEPLOYMENTS)
    parser.add_argument("--interval", type=float, default=60.0, help="simulated seconds between webhooks")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    try:
        # The intake benchmark's private redis-server: AOF, fsync every second, as docker-compose.yml runs it.
        with private_redis(workdir) as conn:
            return run(conn, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(conn: redis.Redis, args: argparse.Namespace) -> int:
    now = [1_700_000_000.0]
    # The outbox writer is left out: its lanes empty as the sender delivers, which is not measured here.
    store = DeploymentStore(conn, listeners=[count_final_state], clock=lambda: now[0])
    apps = [f"app{i}" for i in range(args.apps)]
    memory: dict[int, int] = {}
    started = time.monotonic()
    for n in range(1, args.webhooks + 1):
        now[0] += args.interval
        app = apps[n % len(apps)]
        sha = hashlib.sha1(str(n).encode()).hexdigest()  # noqa: S324 - a commit id, not a secret
        keys = [f"delivery:github:{n}", f"body:{hashlib.sha256(sha.encode()).hexdigest()}"]
        result = store.intake.submit([NewDeployment(app, sha, "refs/heads/main", Trigger.PUSH)], keys, "github")
        for dep in result.deployments:
            # What a worker does: take the job, run the deployment, and its finished job expires.
            store.start(dep.id, "")
            store.finish(dep.id, DeploymentState.SUCCEEDED if n % 10 else DeploymentState.FAILED,
                         live_sha=dep.sha if n % 10 else None)
            conn.lrem(store.queue.key, 0, job_id_for(dep.id))
            Job(job_id_for(dep.id), connection=conn).delete(remove_from_queue=False)
        if n % TRIM_EVERY == 0:
            trim(store, {a: args.keep for a in apps})
        if n in CHECKPOINTS or n == args.webhooks:
            trim(store, {a: args.keep for a in apps})
            memory[n] = int(conn.info("memory")["used_memory"])
            print(f"{n:>7} webhooks: used_memory {memory[n] / 1e6:.2f} MB, keys {conn.dbsize()}, "
                  f"{time.monotonic() - started:.0f}s", flush=True)
    first, last = memory[min(memory)], memory[max(memory)]
    growth = (last - first) / first
    print(f"growth from {min(memory)} to {max(memory)} webhooks: {growth:+.1%} (tolerance {FLAT_TOLERANCE:.0%})")
    return 0 if growth <= FLAT_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())

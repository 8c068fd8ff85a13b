"""Workers benchmark: 8 apps, one push each, deployed by 1, 2 and 4 `hooksvc worker` processes.

Everything is real: signed GitHub pushes through the production Flask app, worker processes each
with a state_dir of its own (as on separate machines), one Redis (database 12, flushed before and
after), git origins, and one Docker engine that all workers share (as workers on several machines
share an app's `docker_host`). Each app is the sample app of the tests (busybox httpd, healthcheck
every 1 s, drain label `touch /tmp/drain` with `hooksvc.drain_seconds: 1`, 0.2 s boot).

Before the timed rounds every app is deployed once (v0, by 4 workers) so that each round is a
rolling update of a live app. Per round (one per worker count, in the order given): start the
workers on the same "machines" as before and wait until they are idle, commit a new version of
every app (new content, so the build cache never serves an earlier round), send the 8 pushes back
to back and wait until all are live. Total = first push → last deployment finished.

Where the time goes, per deployment, from its record and the millisecond stream ids of its log:
waiting for a worker (push → started), git fetch + checkout, compose config (the release steps'
check before the build), build, tag and plan (compose build, the release tags, compose config and
hashes, the left-over check, the plan), start + health gate (compose up → healthy), drain + stop + remove the old
container, finish.

    .venv/bin/python bench/bench_workers.py [--apps 8] [--workers 1,2,4] [--redis-url URL] [--json PATH]

Needs a Docker engine with compose and busybox-static for the test base image; removes every
container, image and network it made and its temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.bench_deploy import timed_log  # noqa: E402
from hooksvc.deployments import Deployment, DeploymentState  # noqa: E402
from tests.helpers.docker import ensure_base_image, remove_project  # noqa: E402
from tests.helpers.fake_git_host import FakeGitHost  # noqa: E402
from tests.helpers.fleet import GH_TOKEN, Fleet, FleetApp  # noqa: E402
from tests.helpers.git import GitOrigin  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
ROUND_TIMEOUT_SECONDS = 600.0
#: The sample app's boot; 1 s races the first health probe (see docs/benchmarks.md, "Deploys").
BOOT_SECONDS = 0.2

PHASES = ("wait for a worker", "git fetch + checkout", "compose config", "build, tag, plan",
          "start + health gate", "drain + retire old", "finish")


def phases(dep: Deployment, pushed: float, log: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per phase of one deployment; each mark ends the phase before it."""
    assert dep.started_at is not None and dep.finished_at is not None

    def at(predicate: Any) -> float:
        found = next((t for t, line in log if predicate(line)), None)
        if found is None:
            raise RuntimeError(f"deployment {dep.id}: a log line is missing:\n" + "\n".join(line for _, line in log))
        return found

    marks = [
        dep.started_at,
        at(lambda s: s.startswith("==> rolling out")),
        at(lambda s: s == "building images"),
        at(lambda s: s.startswith("$ ") and " up " in s),
        at(lambda s: ": healthy after " in s),
        at(lambda s: s.startswith("==> ") and " is live" in s),
        dep.finished_at,
    ]
    result, previous = {}, pushed
    for name, mark in zip(PHASES, marks, strict=True):
        result[name] = mark - previous
        previous = mark
    return result


class WorkersBench:
    def __init__(self, tmp: Path, apps: int, redis_url: str, host: FakeGitHost) -> None:
        self.conn = redis.Redis.from_url(redis_url)
        self.conn.flushdb()
        self.run_id = uuid.uuid4().hex[:6]
        names = [f"app{n}" for n in range(apps)]
        self.specs = [FleetApp(name, GitOrigin(tmp / "origins" / f"{name}.git"), f"hsbw{name}{self.run_id}",
                               health_timeout="120s") for name in names]
        self.fleet = Fleet(tmp, self.specs, host.url, self.conn, redis_url)
        self.live: dict[str, str] = {}
        self.count = 0

    def start_workers(self, count: int) -> None:
        self.fleet.stop()
        for machine_number in range(count):
            self.fleet.start_worker(machine_number)
        self.fleet.wait_until_idle()

    def push_all(self) -> dict[str, Any]:
        """Commit a new version of every app, push them back to back, wait until every one is live."""
        version = f"{self.run_id}-{self.count}"
        self.count += 1
        shas = {a.name: self.fleet.commit(a.name, f"{a.name}-{version}", boot_seconds=BOOT_SECONDS)
                for a in self.specs}
        begin = time.time()
        pushed: dict[str, tuple[str, float]] = {}
        for name, sha in shas.items():
            pushed[name] = (self.fleet.push(name, sha, before=self.live.get(name)), time.time())
        done = {name: self.fleet.wait(i, timeout=ROUND_TIMEOUT_SECONDS) for name, (i, _) in pushed.items()}
        failed = {n: d.error for n, d in done.items() if d.state is not DeploymentState.SUCCEEDED}
        if failed:
            raise RuntimeError(f"deployments failed: {failed}")
        self.live.update(shas)
        end = max(d.finished_at or 0.0 for d in done.values())
        per_deployment = {name: phases(done[name], at, timed_log(self.conn, i)) for name, (i, at) in pushed.items()}
        return {"total_s": end - begin, "deployments": per_deployment,
                "deploy_s": [d.finished_at - d.started_at for d in done.values()  # type: ignore[operator]
                             if d.started_at and d.finished_at]}

    def close(self, client: docker.DockerClient, since: int) -> None:
        self.fleet.stop()
        for spec in self.specs:
            remove_project(client, spec.project, images_since=since)
        self.conn.flushdb()
        self.conn.close()


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "load_1m": round(load[0], 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(n) for n in args.workers.split(",")]
    client = docker.from_env()
    ensure_base_image(client)
    since = int(time.time())
    rounds: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hooksvc-bench-workers-") as tmp, \
            FakeGitHost(tokens={"github": GH_TOKEN}) as host:
        bench = WorkersBench(Path(tmp), args.apps, args.redis_url, host)
        try:
            bench.start_workers(max(counts))
            bench.push_all()  # every app live once: the timed rounds are rolling updates
            for count in counts:
                bench.start_workers(count)
                before = machine()
                rounds[count] = {**bench.push_all(), "machine_before": before, "machine_after": machine()}
                print(f"{count} worker(s): {rounds[count]['total_s']:.1f} s", flush=True)
        finally:
            bench.close(client, since)
    client.close()
    return {"apps": args.apps, "rounds": rounds}


def print_report(result: dict[str, Any]) -> None:
    rounds = result["rounds"]
    base = rounds[min(rounds)]["total_s"]
    print(f"\n{result['apps']} apps, one push each; median seconds per deployment by phase")
    header = "| workers | total | speed-up | " + " | ".join(PHASES) + " | deploy (start → live) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for count, r in sorted(rounds.items()):
        medians = [statistics.median(d[p] for d in r["deployments"].values()) for p in PHASES]
        cells = " | ".join(f"{m:.2f}" for m in medians)
        print(f"| {count} | {r['total_s']:.1f} s | {base / r['total_s']:.2f}× | {cells} | "
              f"{statistics.median(r['deploy_s']):.2f} |")
    print("\nsum over the deployments (worker-seconds) by phase, without the wait for a worker:")
    for count, r in sorted(rounds.items()):
        sums = {p: sum(d[p] for d in r["deployments"].values()) for p in PHASES[1:]}
        print(f"  {count} worker(s): " + ", ".join(f"{p} {s:.1f}" for p, s in sums.items())
              + f"; load {r['machine_before']['load_1m']} → {r['machine_after']['load_1m']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, one round each (default 1,2,4)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed before and after")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "workers.json")
    args = parser.parse_args(argv)
    result = {"machine": machine(), **run(args)}
    print_report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

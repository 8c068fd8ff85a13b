"""What the default pause costs and buys: rolling deploys of an app with no hooksvc label, with and without it.

An unlabelled one-service app (busybox httpd, healthcheck every 1 s, which on SIGTERM stops accepting
and finishes the requests in flight, as servers do) is rolled out `--deploys` times
for each pause (the default `DRAIN_SECONDS`, and 0) while two proxies follow the engine once a
second, each under its own load loop of `--rate` requests/s:

- nginx re-pointed at the healthy containers (tests/helpers/nginx.py, the nginx-proxy model): it
  passes a refused connection on to the next backend, as nginx does by default;
- `HealthyProxy` (tests/helpers/docker.py), which never retries: a request sent to a container
  that has just stopped fails.

Reported per pause: the rollout's own time (median, min–max: what the pause adds to push → live)
and the failed requests behind each proxy. Target: 0 failed behind nginx with the default pause.

    .venv/bin/python bench/bench_default_pause.py [--deploys 5] [--rate 20] [--compose v2]

Sends traffic to 127.0.0.1 only; removes its containers, images and temporary directory afterwards.
Exit 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hooksvc import defaults  # noqa: E402
from hooksvc.config import AppConfig, Secret  # noqa: E402
from tests.helpers.docker import (  # noqa: E402
    HealthyProxy,
    LoadLoop,
    ensure_base_image,
    get_text,
    remove_project,
    wait_for,
    write_sample_app,
)
from tests.helpers.nginx import NginxProxy  # noqa: E402
from workers.compose import COMPOSE_VARIANT_ENV  # noqa: E402
from workers.strategies import compose_rollout  # noqa: E402

PROXY_REFRESH_SECONDS = 1.0


def series(client: docker.DockerClient, root: Path, pause: float, deploys: int, rate: float) -> dict[str, object]:
    project = f"hsbpause{uuid.uuid4().hex[:8]}"
    started = int(time.time())
    app = AppConfig(name=project, host="github", host_kind="github", repo="bench/web", clone_url="/none",
                    secret=Secret("unused"), project=project, health_timeout=60.0, start_grace=1.0)
    lines: list[str] = []
    seconds: list[float] = []
    saved = defaults.DRAIN_SECONDS
    defaults.DRAIN_SECONDS = pause

    def deploy(version: str) -> float:
        release = write_sample_app(root / project / version, version, labels=False, graceful_stop=True)
        return compose_rollout(app, release, log=lines.append, state_dir=root / project / "state").seconds

    try:
        deploy("v0")
        with NginxProxy(client, project, "web", root / project / "nginx",
                        refresh_seconds=PROXY_REFRESH_SECONDS) as nginx, \
                HealthyProxy(client, project, "web", poll_seconds=PROXY_REFRESH_SECONDS) as plain:
            urls = (f"{nginx.url}/version.txt", f"{plain.url}/version.txt")
            for url in urls:
                if not wait_for(lambda u=url: get_text(u) == (200, "v0"), timeout=20):
                    raise SystemExit(f"exit 2: {url} never served v0")
            with LoadLoop(urls[0], rate=rate, max_seconds=600) as via_nginx, \
                    LoadLoop(urls[1], rate=rate, max_seconds=600) as via_plain:
                for n in range(1, deploys + 1):
                    seconds.append(deploy(f"v{n}"))
                time.sleep(2 * PROXY_REFRESH_SECONDS)
                nginx_report, plain_report = via_nginx.stop(), via_plain.stop()
    finally:
        defaults.DRAIN_SECONDS = saved
        remove_project(client, project, images_since=started)
    return {
        "pause": pause, "rollout_median": statistics.median(seconds), "rollout_min": min(seconds),
        "rollout_max": max(seconds), "nginx_failed": nginx_report.failed, "nginx_total":
        nginx_report.ok + nginx_report.failed, "plain_failed": plain_report.failed,
        "plain_total": plain_report.ok + plain_report.failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=5, help="rolling deploys per pause")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s through each proxy")
    parser.add_argument("--compose", choices=("v1", "v2"), default="v2")
    args = parser.parse_args()
    os.environ[COMPOSE_VARIANT_ENV] = args.compose
    client = docker.from_env()
    ensure_base_image(client)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hooksvc-bench-pause-") as tmp:
        for pause in (defaults.DRAIN_SECONDS, 0.0):
            rows.append(series(client, Path(tmp), pause, args.deploys, args.rate))
    print(f"{args.deploys} rolling deploys of an unlabelled app per row, compose {args.compose}, "
          f"{args.rate:g} requests/s through each proxy (both refresh every {PROXY_REFRESH_SECONDS:g} s)")
    print(f"{'pause':>6} | {'rollout (median, min-max)':>27} | {'nginx: failed/sent':>18} | "
          f"{'no-retry proxy: failed/sent':>27}")
    for row in rows:
        rollout = f"{row['rollout_median']:.2f} s ({row['rollout_min']:.2f}-{row['rollout_max']:.2f})"
        print(f"{row['pause']:>5g}s | {rollout:>27} | {row['nginx_failed']:>9}/{row['nginx_total']:<8} | "
              f"{row['plain_failed']:>13}/{row['plain_total']:<13}")
    default_row = rows[0]
    if default_row["nginx_failed"] != 0:
        print("target missed: requests failed behind nginx with the default pause", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

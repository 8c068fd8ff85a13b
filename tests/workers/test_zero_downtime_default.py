"""Zero downtime by default: an app whose compose file has no hooksvc label at all, behind a real nginx that
a generator re-points at the healthy containers once a second (the nginx-proxy model), rolled ten times
under load with compose v1 and v2, loses no request (real Docker, real nginx).

What makes it zero is the default pause: the old container keeps serving until the proxy has found
the new one, so when the old one stops, nginx has a healthy backend to pass the request to. The
app stops as servers do on SIGTERM (stop accepting, finish the requests in flight, exit), which
hooksvc gives it with the service's grace period; busybox httpd alone would cut the responses it
is writing, and no proxy can retry a response it has half passed on.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from hooksvc.config import AppConfig, Secret
from tests.helpers.docker import LoadLoop, get_text, wait_for, write_sample_app
from tests.helpers.nginx import NginxProxy
from workers.strategies import compose_rollout

pytestmark = pytest.mark.docker

DEPLOYS = 10
RATE = 20.0
#: Upper bound of the load loop; ten rollouts take about a minute and a half here.
LOAD_MAX_SECONDS = 300.0


def test_ten_unlabelled_rolling_deploys_behind_nginx_lose_no_request(
    tmp_path: Path, compose_project: str, compose_variant: str, base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    del compose_variant, base_image  # run once per compose variant; the sample app builds on the base
    app = AppConfig(name=compose_project, host="github", host_kind="github", repo="acme/web", clone_url="/none",
                    secret=Secret("unused"), project=compose_project, health_timeout=60.0, start_grace=1.0)
    lines: list[str] = []

    def deploy(version: str) -> None:
        release = write_sample_app(tmp_path / "releases" / version, version, labels=False, graceful_stop=True)
        assert "hooksvc." not in (release / "docker-compose.yml").read_text()
        lines.append(f"==== {version}")
        result = compose_rollout(app, release, log=lines.append, state_dir=tmp_path / "state")
        assert [s.service for s in result.services] == ["web"], "\n".join(lines)

    deploy("v0")
    with NginxProxy(docker_client, compose_project, "web", tmp_path / "nginx") as proxy:
        url = f"{proxy.url}/version.txt"
        assert wait_for(lambda: get_text(url) == (200, "v0"), timeout=20), proxy.error_log()
        with LoadLoop(url, rate=RATE, max_seconds=LOAD_MAX_SECONDS) as load:
            for n in range(1, DEPLOYS + 1):
                deploy(f"v{n}")
            assert wait_for(lambda: get_text(url) == (200, f"v{DEPLOYS}"), timeout=10), proxy.error_log()
            report = load.stop()
        log = "\n".join(lines)
        assert report.failed == 0, f"{report.failures}\n{proxy.error_log()}\n{log}"
        # It followed each rollout: the new container in, then the old one out.
        assert wait_for(lambda: proxy.reloads >= 2 * DEPLOYS, timeout=5), proxy.reloads
        assert not proxy.errors, proxy.errors
    # Every release served part of the load, and no request was left unanswered.
    assert set(report.versions) >= {f"v{n}" for n in range(1, DEPLOYS + 1)}, report.versions
    assert report.ok >= RATE * 30, report.ok
    assert log.count("has no hooksvc.drain label") == DEPLOYS, log

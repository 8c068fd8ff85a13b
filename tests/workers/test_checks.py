"""`hooksvc check-config`'s reachability probes: every engine the apps name is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.config import make_config
from tests.helpers.engines import DockerDaemon
from workers.checks import check_services

pytestmark = pytest.mark.docker


def test_every_engine_an_app_names_is_probed(tmp_path: Path, second_engine: DockerDaemon) -> None:
    """An app's docker_host is pinged beside the local engine; one that nobody serves is named as unreachable."""
    # make_config's last app is `wiki`: these lines land in its table.
    config = make_config(tmp_path, extra=f'docker_host = "{second_engine.tcp_url}"\n')
    results = dict(check_services(config))
    assert results["docker (local)"] is None
    assert results[f"docker {second_engine.tcp_url}"] is None

    gone = make_config(tmp_path, extra='docker_host = "unix:///nonexistent/docker.sock"\n')
    problem = dict(check_services(gone))["docker unix:///nonexistent/docker.sock"]
    assert problem is not None and problem.startswith("Docker engine not reachable")


def test_an_engine_a_swarm_app_names_must_be_a_swarm_manager(tmp_path: Path, second_engine: DockerDaemon) -> None:
    """The second engine is in no swarm: fine for a compose app, named as the problem for a swarm app."""
    config = make_config(tmp_path, extra=f'docker_host = "{second_engine.tcp_url}"\nstrategy = "swarm"\n')
    problem = dict(check_services(config))[f"docker {second_engine.tcp_url}"]
    assert problem is not None and problem.startswith("not a Swarm manager (swarm state inactive)"), problem
    assert "docker swarm init" in problem

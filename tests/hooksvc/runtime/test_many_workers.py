"""Many workers on many machines: real `hooksvc worker` processes, each with a state_dir of its own
(as on separate machines: own git mirrors, releases and rollout records), sharing one Redis and,
as workers on several machines share an app's engine, one Docker engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import redis as redis_lib

from hooksvc.deployments import Deployment, DeploymentState
from tests.helpers.config import TEST_REDIS_URL
from tests.helpers.fleet import Fleet, open_fleet
from tests.helpers.git import GitOrigin

pytestmark = pytest.mark.docker

APPS = ("alpha", "beta", "gamma")


@pytest.fixture
def fleet(tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
          docker_client: docker.DockerClient, base_image: str) -> Iterator[Fleet]:
    with open_fleet(tmp_path, make_git_origin, redis, TEST_REDIS_URL,
                    {name: (None, docker_client) for name in APPS}) as fleet:
        yield fleet


def interval(d: Deployment) -> tuple[float, float]:
    assert d.started_at is not None and d.finished_at is not None, d
    return d.started_at, d.finished_at


class TestManyMachines:
    def test_apps_deploy_in_parallel_and_one_app_never_twice_at_once(self, fleet: Fleet) -> None:
        """Three workers with separate state_dirs: three apps roll out at the same time; a second push of
        one app, taken by another worker, waits for the first to finish."""
        for _ in APPS:
            fleet.start_worker()
        fleet.wait_until_idle()
        first = {app: fleet.commit(app, "v1") for app in APPS}
        ids = {app: fleet.push(app, sha) for app, sha in first.items()}
        done = {app: fleet.wait(i) for app, i in ids.items()}
        assert all(d.state is DeploymentState.SUCCEEDED for d in done.values()), {a: d.error for a, d in done.items()}
        spans = [interval(d) for d in done.values()]
        assert max(s for s, _ in spans) < min(f for _, f in spans), f"not all three ran at once: {spans}"
        # Each app went to a worker of its own: one machine each.
        assert sorted(m for app in APPS for m in fleet.machines_that_ran(app, first[app])) == [0, 1, 2]

        v2 = fleet.commit("alpha", "v2")
        d2 = fleet.push("alpha", v2, before=first["alpha"])
        fleet.wait_for_log(d2, "rolling out")
        v3 = fleet.commit("alpha", "v3")
        d3 = fleet.push("alpha", v3, before=v2)
        second, third = fleet.wait(d2), fleet.wait(d3)
        assert second.state is DeploymentState.SUCCEEDED, second.error
        assert third.state is DeploymentState.SUCCEEDED, third.error
        assert interval(second)[1] <= interval(third)[0], (interval(second), interval(third))
        # The busy worker could not take the second push: another machine did, and waited for the lock.
        (ran_v2,), (ran_v3,) = fleet.machines_that_ran("alpha", v2), fleet.machines_that_ran("alpha", v3)
        assert ran_v2 != ran_v3
        live = fleet.store.live("alpha")
        assert live is not None and live.sha == v3

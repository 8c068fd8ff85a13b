"""A release's rollout settings (`hooksvc.*` labels, `stop_grace_period`) are range-checked before anything changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
import redis as redis_lib

from hooksvc import defaults
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import DeployError
from hooksvc.store import open_store
from tests.helpers.config import make_config
from tests.helpers.fleet import sample_app_files
from tests.helpers.git import GitOrigin
from workers.jobs import execute
from workers.service_labels import check_service_settings, retire_wait_seconds


def service(labels: dict[str, str] | None = None, **config: Any) -> dict[str, Any]:
    return {"image": "x", "labels": labels or {}, **config}


class TestCheckServiceSettings:
    @pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e9", "601", "three", ""])
    def test_a_drain_pause_out_of_range_is_refused(self, value: str) -> None:
        """Non-finite, negative, absurd or unreadable `hooksvc.drain_seconds` is refused, naming service, label
        and value."""
        with pytest.raises(DeployError, match=rf"service web: label hooksvc.drain_seconds must be .* got {value!r}"):
            check_service_settings({"web": service({"hooksvc.drain_seconds": value})})

    @pytest.mark.parametrize("value", ["0", "3", "2.5", str(int(defaults.MAX_RETIRE_WAIT_SECONDS))])
    def test_drain_pauses_in_range_pass(self, value: str) -> None:
        """Whole and fractional seconds from 0 to the limit are accepted."""
        check_service_settings({"web": service({"hooksvc.drain_seconds": value})})

    def test_stop_grace_and_strategy_are_checked_and_every_problem_named(self) -> None:
        """A week's stop grace and an unknown strategy are refused together, each with its service."""
        services = {"web": service(stop_grace_period="168h"), "db": service({"hooksvc.strategy": "blue-green"}),
                    "ok": service({"hooksvc.strategy": "Recreate"}, stop_grace_period="1m30s")}
        with pytest.raises(DeployError) as refused:
            check_service_settings(services)
        assert str(refused.value) == (
            f"service web: stop_grace_period must be a number of seconds from 0 to "
            f"{defaults.MAX_RETIRE_WAIT_SECONDS:g}, got '168h'; "
            "service db: label hooksvc.strategy must be 'rolling' or 'recreate', got 'blue-green'")

    def test_durations_read_as_compose_writes_them(self) -> None:
        """Go durations, plain numbers and numeric strings all read as seconds."""
        assert [retire_wait_seconds(v) for v in ("1m30s", 10, "2.5", "500ms")] == [90.0, 10.0, 2.5, 0.5]


@pytest.mark.docker
def test_an_infinite_drain_label_changes_nothing(
    tmp_path: Path, make_git_origin: Callable[[str], GitOrigin], redis: redis_lib.Redis,
    docker_client: docker.DockerClient, base_image: str, compose_project: str,
) -> None:
    """A push whose release says `hooksvc.drain_seconds: "inf"` fails before the build, and the live release's
    container keeps running alone: nothing is started, stopped or left half-way."""
    del base_image
    origin = make_git_origin("labels")

    def commit(version: str, drain: float) -> str:
        return origin.commit(version, sample_app_files(tmp_path, version, drain_seconds=drain, boot_seconds=0))

    config = make_config(tmp_path, extra=f"""
        [apps.labels]
        host = "github"
        repo = "acme/labels"
        clone_url = "{origin.path}"
        secret_env = "SHOP_SECRET"
        project = "{compose_project}"
        health_timeout = "40s"
    """)
    store = open_store(config, redis)

    def deploy(sha: str) -> str:
        dep = store.intake.submit([NewDeployment("labels", sha, "refs/heads/main", Trigger.MANUAL,
                                                 forced=True)]).deployments[0]
        execute(config, store, redis, dep.id)
        return dep.id

    good = deploy(commit("v1", 1))
    assert store.get(good).state is DeploymentState.SUCCEEDED, store.get(good).error

    def containers() -> list[tuple[str, str]]:
        project = {"label": f"com.docker.compose.project={compose_project}"}
        found = docker_client.containers.list(all=True, filters=project)
        return sorted((c.id, c.status) for c in found)

    live = containers()
    bad = deploy(commit("v2", float("inf")))
    done = store.get(bad)
    assert done.state is DeploymentState.FAILED
    assert "service web: label hooksvc.drain_seconds must be a number of seconds from 0 to 600, got 'inf'" in done.error
    assert containers() == live and [status for _, status in live] == ["running"]
    assert not any(line.startswith("building images") for line in store.logs.read(bad)[0])

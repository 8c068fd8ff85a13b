"""Rolling out a compose file written without hooksvc in mind (no labels): the old container waits out the
default pause before it stops, so a proxy that discovers containers has found the new one (real Docker)."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from hooksvc import defaults
from hooksvc.config import AppConfig, Secret
from tests.helpers.docker import write_sample_app
from workers.docker_engine import DockerEngine
from workers.strategies import compose_rollout

pytestmark = pytest.mark.docker


def test_an_unlabelled_service_pauses_before_its_old_container_stops(
    tmp_path: Path, compose_project: str, base_image: str, docker_client: docker.DockerClient,
) -> None:
    """With no `hooksvc.drain*` label the old container keeps serving for `DRAIN_SECONDS` after the new one is
    healthy, then stops with its grace; the log says so."""
    del base_image
    app = AppConfig(name=compose_project, host="github", host_kind="github", repo="acme/web", clone_url="/none",
                    secret=Secret("unused"), project=compose_project, health_timeout=30.0, start_grace=1.0)
    lines: list[str] = []
    engine = DockerEngine(docker_client)
    compose_rollout(app, write_sample_app(tmp_path / "v1", "v1", labels=False), log=lines.append, state_dir=tmp_path)
    (old,) = engine.containers(compose_project, "web")

    stamps: list[tuple[float, str]] = []
    compose_rollout(app, write_sample_app(tmp_path / "v2", "v2", labels=False),
                    log=lambda line: stamps.append((time.monotonic(), line)), state_dir=tmp_path)
    text = "\n".join(line for _, line in stamps)
    healthy_at = next(t for t, line in stamps if "new containers healthy; retiring 1 old" in line)
    stopping_at = next(t for t, line in stamps if f"stopping {old.name}" in line)
    assert "has no hooksvc.drain label" in text, text
    assert f"waiting {defaults.DRAIN_SECONDS:g}s for proxies" in text, text
    assert stopping_at - healthy_at >= defaults.DRAIN_SECONDS - 0.1, text
    (new,) = engine.containers(compose_project, "web")
    assert new.id != old.id

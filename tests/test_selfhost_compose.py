"""The docker-compose.yml that runs hooksvc itself, read as data: no Docker needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
CONFIG_IN_CONTAINER = "/etc/hooksvc/config.toml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    # safe_load resolves the `<<: *hooksvc` merge keys the way compose does.
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return dict(document["services"])


def short_volumes(service: dict[str, Any]) -> list[list[str]]:
    """The service's volumes in `source:target[:mode]` form, split on the colons."""
    return [entry.split(":") for entry in service.get("volumes", []) if isinstance(entry, str)]


def command_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


class TestSelfHostCompose:
    def test_has_redis_web_and_worker(self, services: dict[str, Any]) -> None:
        """The file defines exactly the three services hooksvc needs: redis, web and worker."""
        assert set(services) == {"redis", "web", "worker"}

    def test_redis_keeps_an_append_only_file(self, services: dict[str, Any]) -> None:
        """Redis runs from redis:7-alpine with appendonly on, so queued deployments survive a restart."""
        redis = services["redis"]
        assert redis["image"].startswith("redis:7")
        words = command_words(redis)
        assert words[words.index("--appendonly") + 1] == "yes"

    def test_web_serves_on_8080(self, services: dict[str, Any]) -> None:
        """The web service runs `hooksvc serve` bound to 0.0.0.0:8080 and publishes port 8080."""
        web = services["web"]
        assert command_words(web) == ["serve", "--bind", "0.0.0.0:8080"]
        assert any(str(port).endswith("8080:8080") for port in web["ports"])

    def test_web_healthcheck_asks_healthz(self, services: dict[str, Any]) -> None:
        """The web service's healthcheck requests /healthz on port 8080."""
        test = services["web"]["healthcheck"]["test"]
        text = test if isinstance(test, str) else " ".join(test)
        assert "127.0.0.1:8080/healthz" in text

    def test_worker_runs_hooksvc_worker(self, services: dict[str, Any]) -> None:
        """The worker service runs `hooksvc worker` and can be scaled: no fixed name, no host port."""
        worker = services["worker"]
        assert command_words(worker) == ["worker"]
        assert "container_name" not in worker
        assert "ports" not in worker

    def test_worker_mounts_the_docker_socket(self, services: dict[str, Any]) -> None:
        """The worker mounts the host's Docker socket, since it deploys through the host's engine."""
        assert ["/var/run/docker.sock", "/var/run/docker.sock"] in short_volumes(services["worker"])

    def test_worker_keeps_state_at_the_same_path_as_the_host(self, services: dict[str, Any]) -> None:
        """The worker's state directory is the host's at the same path, so apps' bind mounts resolve."""
        assert ["/var/lib/hooksvc", "/var/lib/hooksvc"] in short_volumes(services["worker"])

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_config_is_mounted_read_only(self, services: dict[str, Any], name: str) -> None:
        """Both hooksvc services mount ./config.toml read-only and are pointed at it."""
        service = services[name]
        assert ["./config.toml", CONFIG_IN_CONTAINER, "ro"] in short_volumes(service)
        assert service["environment"]["HOOKSVC_CONFIG"] == CONFIG_IN_CONTAINER

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_secrets_come_from_env_file_not_the_compose_file(self, services: dict[str, Any], name: str) -> None:
        """Secrets reach the hooksvc services through the .env file; the environment holds no secret."""
        service = services[name]
        assert service["env_file"] in (".env", [".env"])
        assert set(service["environment"]) == {"HOOKSVC_CONFIG", "REDIS_URL"}

    @pytest.mark.parametrize("name", ["web", "worker"])
    def test_hooksvc_waits_for_a_healthy_redis(self, services: dict[str, Any], name: str) -> None:
        """Web and worker start only once Redis answers its healthcheck, and reach it by service name."""
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:6379/")
        assert "healthcheck" in services["redis"]

"""docker-stack.yml, which runs hooksvc itself on a Docker Swarm: read by the docker CLI's own
stack parser, and as data."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

STACK_FILE = Path(__file__).resolve().parent.parent / "docker-stack.yml"


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The stack as `docker stack config` resolves it (merges, interpolation, schema validation)."""
    result = subprocess.run(["docker", "stack", "config", "-c", str(STACK_FILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    if "unknown command" in result.stderr or "is not a docker command" in result.stderr:
        pytest.skip(f"this docker CLI has no `docker stack config`: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


class TestSelfHostStack:
    def test_the_docker_cli_accepts_it_as_a_stack_file(self, resolved: dict[str, Any]) -> None:
        """`docker stack config` validates the file and finds redis, web and worker, none of them built."""
        services = resolved["services"]
        assert set(services) == {"redis", "web", "worker"}
        assert not any("build" in s for s in services.values())
        assert services["web"]["image"] == services["worker"]["image"]

    def test_redis_keeps_an_append_only_file_on_one_node(self, resolved: dict[str, Any]) -> None:
        """Redis persists every write to its append-only file, and stays on the node holding its volume."""
        redis = resolved["services"]["redis"]
        command = redis["command"]
        assert command[command.index("--appendonly") + 1] == "yes"
        assert redis["deploy"]["replicas"] == 1 and redis["deploy"]["placement"]["constraints"]

    def test_workers_drive_a_managers_engine_with_a_local_state_dir(self, resolved: dict[str, Any]) -> None:
        """Workers run on managers (stack deploys need one) with the node's socket and state_dir, and stop warmly."""
        worker = resolved["services"]["worker"]
        assert worker["command"] == ["worker"]
        assert "node.role == manager" in worker["deploy"]["placement"]["constraints"]
        targets = {v["target"]: v["source"] for v in worker["volumes"]}
        assert targets["/var/run/docker.sock"] == "/var/run/docker.sock"
        assert targets["/var/lib/hooksvc"] == "/var/lib/hooksvc"
        assert worker["stop_grace_period"] == "10m0s"

    def test_everything_reaches_redis_by_its_service_name(self, resolved: dict[str, Any]) -> None:
        """web and worker take REDIS_URL pointing at the redis service, the config from a Docker config."""
        for name in ("web", "worker"):
            service = resolved["services"][name]
            assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
            assert service["configs"][0]["target"] == service["environment"]["HOOKSVC_CONFIG"]

    def test_web_updates_start_first(self, resolved: dict[str, Any]) -> None:
        """Two web replicas, updated start-first with rollback, so a hooksvc upgrade drops no webhook."""
        deploy = resolved["services"]["web"]["deploy"]
        assert deploy["replicas"] >= 2
        assert deploy["update_config"]["order"] == "start-first"

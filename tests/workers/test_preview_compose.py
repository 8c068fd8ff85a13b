"""What a preview changes in its pull request's compose model (pure): its service, its port, the override
file, and what a fork may not ask for."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooksvc.errors import DeployError
from workers.preview_compose import (
    EXCLUDED_PROFILE,
    fork_problems,
    kept_services,
    override_text,
    preview_service,
    target_port,
)
from workers.previews import registry_logins_withheld

HEALTHY = {"test": ["CMD", "true"]}
SERVICES: dict[str, Any] = {
    "db": {"image": "postgres", "ports": [{"target": 5432, "published": "5432"}]},
    "web": {"build": {"context": "."}, "healthcheck": HEALTHY, "ports": [{"target": 8000, "published": "80"}]},
    "worker": {"build": {"context": "."}, "expose": ["9000"]},
}


class _Tagged(yaml.SafeLoader):
    """Reads compose's `!reset`/`!override` tags as what they wrap, tagged."""


_Tagged.add_multi_constructor("!", lambda loader, tag, node: (tag, loader.construct_sequence(node)
                                                              if isinstance(node, yaml.SequenceNode) else None))


class TestChoices:
    def test_service_defaults_to_the_first_kept_one_with_a_healthcheck(self) -> None:
        """Without previews.service, the first service (of those kept) with a healthcheck is reached."""
        assert preview_service(SERVICES, ["db", "web", "worker"], None) == "web"
        assert preview_service(SERVICES, ["db", "worker"], "worker") == "worker"
        with pytest.raises(DeployError, match="set previews.service"):
            preview_service(SERVICES, ["db", "worker"], None)
        with pytest.raises(DeployError, match="'web' is not among"):
            preview_service(SERVICES, ["db"], "web")

    def test_services_must_exist_in_the_pull_request(self) -> None:
        """previews.services naming a service the PR lacks is refused, naming it."""
        assert kept_services(SERVICES, []) == ["db", "web", "worker"]
        with pytest.raises(DeployError, match="'cache'"):
            kept_services(SERVICES, ["web", "cache"])

    def test_target_port_is_the_first_published_then_exposed(self) -> None:
        """The host port forwards to the first published target, else the first exposed port."""
        assert target_port("web", SERVICES["web"]) == 8000
        assert target_port("worker", SERVICES["worker"]) == 9000
        with pytest.raises(DeployError, match="publishes and exposes no port"):
            target_port("db", {"image": "x"})


class TestOverride:
    def test_ports_dropped_one_published_others_left_out(self) -> None:
        """Every published port is reset, the preview's service publishes its host port, left-out services
        get a profile nobody enables, and the environment goes to every kept service."""
        text = override_text(SERVICES, ["db", "web"], "web", published="9104:8000", labels={},
                             environment={"BASE_URL": "http://x:9104/"})
        services = yaml.load(text, Loader=_Tagged)["services"]  # noqa: S506 - our own loader, safe + tags
        assert services["db"]["ports"] == ("reset", [])
        assert services["web"]["ports"] == ("override", ["9104:8000"])
        assert services["worker"] == {"profiles": ("override", [EXCLUDED_PROFILE])}
        assert services["web"]["environment"] == services["db"]["environment"] == {"BASE_URL": "http://x:9104/"}

    def test_labels_mode_publishes_nothing(self) -> None:
        """With labels, the service gets them and no port at all."""
        text = override_text(SERVICES, ["web"], "web", published=None, labels={"a.pr7": "Host(`x`)"}, environment={})
        services = yaml.load(text, Loader=_Tagged)["services"]  # noqa: S506 - our own loader
        assert services["web"] == {"ports": ("reset", []), "labels": {"a.pr7": "Host(`x`)"}}


class TestForks:
    @pytest.mark.parametrize(("config", "word"), [
        ({"privileged": True}, "privileged"), ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
        ({"network_mode": "host"}, "network_mode"), ({"pid": "host"}, "pid"),
        ({"devices": ["/dev/kmsg"]}, "devices"), ({"network_mode": "container:abc"}, "network_mode"),
    ])
    def test_host_access_is_refused(self, config: dict[str, Any], word: str) -> None:
        """A fork's service may not be privileged, add capabilities or share the host's namespaces."""
        problems = fork_problems({"web": {"image": "x", **config}})
        assert problems and f"services.web.{word}" in problems[0]

    def test_an_ordinary_service_is_fine(self) -> None:
        """Ports, volumes and healthchecks are no problem."""
        assert fork_problems(SERVICES) == []


def test_a_fork_builds_with_no_registry_logins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the fork's build, DOCKER_CONFIG names a config with no logins that still finds the CLI
    plugins; afterwards the worker's own config is back."""
    own = tmp_path / "docker"
    (own / "cli-plugins").mkdir(parents=True)
    (own / "config.json").write_text('{"auths": {"registry.example.com": {"auth": "c2VjcmV0"}}}')
    monkeypatch.setenv("DOCKER_CONFIG", str(own))
    with registry_logins_withheld():
        inside = Path(os.environ["DOCKER_CONFIG"])
        assert inside != own and json.loads((inside / "config.json").read_text()) == {}
        assert (inside / "cli-plugins").resolve() == (own / "cli-plugins").resolve()
    assert os.environ["DOCKER_CONFIG"] == str(own) and not inside.exists()

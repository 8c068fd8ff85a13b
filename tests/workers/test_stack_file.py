"""The stack file a swarm deployment deploys, planned from the compose model (pure: no Docker)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from workers.stack_file import StackRefused, plan_stack, release_tag, rollout_bound, to_stack_document
from workers.swarm_steps import STEP_LABEL, step_service

TAG = release_tag("3f2a9c41d0e7" + "0" * 28, "118")

#: `docker compose config --format json` of a small app, as compose v2 prints it.
V2_MODEL: dict[str, Any] = {
    "name": "shop",
    "networks": {"default": {"name": "shop_default", "ipam": {}},
                 "edge": {"name": "traefik", "external": True}},
    "volumes": {"data": {"name": "shop_data"}},
    "services": {
        "web": {
            "build": {"context": "/releases/abc", "dockerfile": "Dockerfile"},
            "command": None,
            "entrypoint": None,
            "depends_on": {"db": {"condition": "service_started", "required": True}},
            "environment": {"DEBUG": "0"},
            "networks": {"default": None, "edge": None},
            "ports": [{"mode": "ingress", "target": 8000, "published": "8000", "protocol": "tcp"}],
            "volumes": [{"type": "bind", "source": "/releases/abc/static", "target": "/static",
                         "bind": {"create_host_path": True}}],
        },
        "db": {
            "image": "postgres:16",
            "deploy": {"update_config": {"order": "stop-first", "failure_action": "pause"},
                       "rollback_config": {"order": "stop-first"}},
            "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data", "volume": {}}],
            "networks": {"default": None},
        },
    },
}


def built_name(service: str, config: Mapping[str, Any]) -> str:
    image = config.get("image")
    return image if isinstance(image, str) and image else f"shop-{service}"


def plan(model: Mapping[str, Any], *, registry: str | None = None, nodes: int = 1) -> Any:
    return plan_stack(model, stack="shop", tag=TAG, registry=registry, nodes=nodes, health_timeout=60.0,
                      built_name=built_name)


def with_service(name: str, config: dict[str, Any]) -> dict[str, Any]:
    model = copy.deepcopy(V2_MODEL)
    model["services"][name] = config
    return model


class TestStackDocument:
    def test_compose_v2_output_becomes_a_version_3_stack_file(self) -> None:
        """What compose v2 prints that the stack loader refuses is translated: no project name, no nulls,
        depends_on as a list, port numbers as numbers, no compose-only bind option, no `build:`; the
        names compose gave networks and volumes are left to the stack, an external name is kept."""
        document = to_stack_document(V2_MODEL, "shop")
        web = document["services"]["web"]
        assert document["version"] == "3.8" and "name" not in document
        assert "build" not in web and "command" not in web and "entrypoint" not in web
        assert web["depends_on"] == ["db"]
        assert web["ports"] == [{"mode": "ingress", "target": 8000, "published": 8000, "protocol": "tcp"}]
        assert web["volumes"] == [{"type": "bind", "source": "/releases/abc/static", "target": "/static"}]
        assert web["networks"] == {"default": None, "edge": None}
        assert document["networks"] == {"default": {"ipam": {}}, "edge": {"name": "traefik", "external": True}}
        assert document["volumes"] == {"data": {}}
        assert V2_MODEL["services"]["web"]["build"], "the model itself is left as it was"


class TestPlan:
    def test_updates_start_first_and_roll_back_where_the_file_says_nothing(self) -> None:
        """A service without update settings gets start-first updates with rollback on failure and a
        start-first rollback; a service that sets them keeps its own; the notes say what was added."""
        result = plan(V2_MODEL)
        web, db = result.document["services"]["web"]["deploy"], result.document["services"]["db"]["deploy"]
        assert web["update_config"] == {"order": "start-first", "failure_action": "rollback"}
        assert web["rollback_config"] == {"order": "start-first"}
        assert db["update_config"] == {"order": "stop-first", "failure_action": "pause"}
        assert db["rollback_config"] == {"order": "stop-first"}
        assert result.notes == ("web: added deploy.update_config.order: start-first, deploy.update_config."
                                "failure_action: rollback, deploy.rollback_config.order: start-first "
                                "(the file sets none)",)

    def test_a_service_on_a_named_volume_updates_stop_first(self) -> None:
        """Two tasks must not share a database's volume: without an order in the file, such a service stops
        its old task before the new one starts (as the rolling strategy recreates it), and the log says why."""
        db = {"image": "postgres:16", "volumes": [{"type": "volume", "source": "data", "target": "/data"}]}
        result = plan(with_service("db", db))
        assert result.document["services"]["db"]["deploy"]["update_config"]["order"] == "stop-first"
        assert result.document["services"]["db"]["deploy"]["rollback_config"]["order"] == "stop-first"
        assert "db: added deploy.update_config.order: stop-first (it mounts the named volume 'data', which two " \
               "tasks must not share)" in result.notes[0]

    def test_built_images_run_under_the_release_tag(self) -> None:
        """Every built service runs its image under the release tag (which says the commit); pulled images
        are left alone."""
        result = plan(V2_MODEL)
        assert TAG == "3f2a9c41d0e7-118"
        assert [(i.service, i.built, i.release) for i in result.images] == [("web", "shop-web", f"shop-web:{TAG}")]
        assert result.document["services"]["web"]["image"] == f"shop-web:{TAG}"
        assert result.document["services"]["db"]["image"] == "postgres:16"

    @pytest.mark.parametrize(("image", "pushed"), [
        ("shop/web", "127.0.0.1:5000/shop/web"),
        ("shop/web:latest", "127.0.0.1:5000/shop/web"),
        ("127.0.0.1:5000/shop/web", "127.0.0.1:5000/shop/web"),
    ])
    def test_with_a_registry_images_are_named_by_the_registry(self, image: str, pushed: str) -> None:
        """With a registry, a built image is pushed and run as REGISTRY/<its image name>:<release tag>."""
        model = with_service("web", {**V2_MODEL["services"]["web"], "image": image})
        result = plan(model, registry="127.0.0.1:5000", nodes=3)
        assert result.images[0].release == f"{pushed}:{TAG}"
        assert result.document["services"]["web"]["image"] == f"{pushed}:{TAG}"

    def test_a_file_that_cannot_work_is_refused_with_every_fix(self) -> None:
        """Each reason the stack cannot work is listed, with how to fix it, in one refusal."""
        model = copy.deepcopy(V2_MODEL)
        model["services"]["proxy"] = {"image": "proxy:1", "ports": [{"target": 80, "published": "80", "mode": "host"}]}
        model["services"]["admin"] = {"image": "admin:1", "ports": ["127.0.0.1:9000:9000"]}
        model["services"]["api"] = {"build": {"context": "."}, "image": "ghcr.io/acme/api"}
        with pytest.raises(StackRefused) as refused:
            plan(model, registry="127.0.0.1:5000")
        problems = refused.value.problems
        assert len(problems) == 4, problems
        assert ("service web is built but names no image: with a registry, the image name is what it is pushed as; "
                "give it one, e.g. `image: shop/web` (pushed as 127.0.0.1:5000/shop/web)") in problems
        assert ("service api: its image ghcr.io/acme/api names the registry ghcr.io, but the app pushes to "
                "127.0.0.1:5000: name the image without a registry (or with 127.0.0.1:5000/)") in problems
        assert any(p.startswith("service admin: port 9000 is published on 127.0.0.1 only, which Swarm cannot do")
                   for p in problems)
        assert any(p.startswith("service proxy: port 80 is published in host mode, and update_config.order is "
                                "start-first") and "Set deploy.update_config.order: stop-first for proxy" in p
                   for p in problems)

    def test_several_nodes_need_a_registry(self) -> None:
        """Images built on one node cannot run on the others: without a registry, a multi-node swarm is refused."""
        with pytest.raises(StackRefused, match=r"the swarm has 3 nodes, .* set registry = \"HOST:PORT\""):
            plan(V2_MODEL, nodes=3)

    def test_several_nodes_cannot_mount_the_release_checkout(self) -> None:
        """A bind mount from the release's checkout exists on this machine only: refused on several nodes."""
        model = with_service("web", {**V2_MODEL["services"]["web"], "image": "shop/web"})
        with pytest.raises(StackRefused) as refused:
            plan_stack(model, stack="shop", tag=TAG, registry="127.0.0.1:5000", nodes=2, health_timeout=60.0,
                       built_name=built_name, release_dir="/releases/abc")
        assert refused.value.problems == [
            "service web: it mounts /releases/abc/static from the release's checkout, which only this machine "
            "has, but the swarm has 2 nodes: copy the files into the image, or use a volume"]
        one_node = plan_stack(model, stack="shop", tag=TAG, registry=None, nodes=1, health_timeout=60.0,
                              built_name=built_name, release_dir="/releases/abc")
        assert one_node.document["services"]["web"]["volumes"][0]["source"] == "/releases/abc/static"

    def test_a_host_mode_port_fits_start_first_with_a_free_node_but_not_more_replicas_than_nodes(self) -> None:
        """Start-first with a host-mode port works when a node is free for the new task; more replicas
        than nodes never fit, whatever the order."""
        proxy = {"image": "proxy:1", "ports": [{"target": 80, "published": 80, "mode": "host"}],
                 "deploy": {"replicas": 2}}
        assert plan({"services": {"proxy": proxy}}, nodes=3).document["services"]["proxy"]["ports"]
        stop_first = {"replicas": 2, "update_config": {"order": "stop-first"}}
        with pytest.raises(StackRefused) as refused:
            plan({"services": {"proxy": {**proxy, "deploy": stop_first}}})
        assert refused.value.problems == [
            "service proxy: port 80 is published in host mode, which one task per node can bind, but 2 replicas "
            "run on 1 node(s): lower deploy.replicas to 1, or publish the port in ingress mode"]

    def test_convergence_is_bounded_per_batch_of_tasks(self) -> None:
        """A service updating 3 tasks one at a time may take 3 × (health timeout + monitor + delay)."""
        config = {"deploy": {"replicas": 3, "update_config": {"parallelism": 1, "monitor": "2s", "delay": "1s"}}}
        assert rollout_bound(config, 10.0, nodes=1) == 3 * (10 + 2 + 1)
        assert rollout_bound({"deploy": {"replicas": 3, "update_config": {"parallelism": 0}}}, 10.0, 1) == 15.0
        assert rollout_bound({"deploy": {"mode": "global"}}, 10.0, nodes=2) == 2 * 15.0
        assert rollout_bound(config, 10.0, 1, "rollback_config") == 3 * (10 + 5), "Swarm's own rollback defaults"


def test_a_release_step_runs_as_a_one_off_service_made_from_its_services_entry() -> None:
    """The step's service keeps the image, environment, volumes, networks and placement of the service it
    runs in, with the step's argv as its command (`$` escaped for the CLI's interpolation); no port, no
    healthcheck, no network alias, one task never restarted, labelled as a step."""
    document = to_stack_document(V2_MODEL, "shop")
    web = {**document["services"]["web"], "image": f"shop-web:{TAG}",
           "healthcheck": {"test": ["CMD", "true"]},
           "networks": {"default": {"aliases": ["app"]}, "edge": None},
           "deploy": {"replicas": 3, "placement": {"constraints": ["node.role == manager"]},
                      "labels": {"traefik.enable": "true"}, "update_config": {"order": "start-first"}}}
    step = step_service(web, ["sh", "-c", "echo $RELEASE"], "pre_deploy")
    assert step["image"] == f"shop-web:{TAG}"
    assert step["environment"] == {"DEBUG": "0"} and step["volumes"] == web["volumes"]
    assert step["command"] == ["sh", "-c", "echo $$RELEASE"]
    assert step["networks"] == {"default": None, "edge": None}
    assert step["healthcheck"] == {"disable": True}
    assert "ports" not in step and "depends_on" not in step
    assert step["deploy"] == {"placement": {"constraints": ["node.role == manager"]}, "mode": "replicated",
                              "replicas": 1, "restart_policy": {"condition": "none"},
                              "labels": {STEP_LABEL: "pre_deploy"}}
    assert web["deploy"]["replicas"] == 3  # the service's own entry is left as it was

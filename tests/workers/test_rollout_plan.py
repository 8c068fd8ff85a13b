"""The pure rollout planner: what happens to each service, and why; plus the live-container record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.config import AppConfig, Secret
from hooksvc.errors import DeployError
from workers.docker_engine import unhealthy_within
from workers.rollout.live_record import LiveRecord, record_path, save_record
from workers.rollout.model import dependency_order, fixed_host_ports, named_volumes, parse_go_duration
from workers.rollout.planner import ContainerInfo, plan_rollout
from workers.strategies import compose_rollout

HASH_A, HASH_B = "a" * 64, "b" * 64
IMAGE_A, IMAGE_B = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def container(service: str, cid: str, config_hash: str = HASH_A, image_id: str = IMAGE_A, *,
              state: str = "running", compose_version: str = "2.40.3") -> ContainerInfo:
    return ContainerInfo(id=cid, name=f"p-{service}-{cid}", service=service, state=state,
                         config_hash=config_hash, image_id=image_id, compose_version=compose_version)


def plan_one(config: Mapping[str, Any], *, config_hash: str = HASH_B, image_id: str | None = IMAGE_A,
             containers: list[ContainerInfo] | None = None, compose_major: int = 2) -> tuple[str, str]:
    """Plan a single service `web` (one running container with HASH_A/IMAGE_A unless told)."""
    current = [container("web", "c1")] if containers is None else containers
    plan = plan_rollout({"web": config}, {"web": config_hash}, {"web": image_id}, current,
                        compose_major=compose_major)
    (step,) = plan.services
    return step.action, step.reason


class TestChangeDetection:
    def test_same_hash_and_image_is_unchanged(self) -> None:
        """A service whose config hash and image match its containers is left alone."""
        assert plan_one({}, config_hash=HASH_A) == ("unchanged", "config hash and image unchanged")

    def test_a_new_image_under_the_same_hash_rolls(self) -> None:
        """v2 leaves the image out of its hash: a rebuilt image alone makes the service change."""
        action, reason = plan_one({}, config_hash=HASH_A, image_id=IMAGE_B)
        assert action == "rolling"
        assert reason == "image changed (111111111111 -> 222222222222)"

    def test_a_new_hash_rolls(self) -> None:
        """A changed config hash makes the service change and the reason shows both hashes."""
        assert plan_one({}) == ("rolling", "config changed (hash aaaaaaaaaaaa -> bbbbbbbbbbbb)")

    def test_a_redeploy_replaces_an_unchanged_service_as_if_changed(self) -> None:
        """`force` (a redeploy) rolls an unchanged service, or recreates one that must not run twice."""
        rolled = plan_rollout({"web": {}}, {"web": HASH_A}, {"web": IMAGE_A}, [container("web", "c1")], force=True)
        assert [(p.action, p.reason, p.forced) for p in rolled.services] == [
            ("rolling", "unchanged, replaced by a redeploy", True)]
        fixed_port = {"ports": [{"target": 80, "published": "8080"}]}
        recreated = plan_rollout({"web": fixed_port}, {"web": HASH_A}, {"web": IMAGE_A}, [container("web", "c1")],
                                 force=True)
        (step,) = recreated.services
        assert step.action == "recreate" and step.forced and step.reason.startswith("unchanged, replaced by a redeploy")
        changed = plan_rollout({"web": {}}, {"web": HASH_B}, {"web": IMAGE_A}, [container("web", "c1")], force=True)
        assert not changed.services[0].forced  # a changed service is replaced anyway: compose needs no telling

    def test_unknown_image_id_does_not_count_as_a_change(self) -> None:
        """A service whose image cannot be looked up is judged by its hash alone."""
        assert plan_one({}, config_hash=HASH_A, image_id=None)[0] == "unchanged"

    def test_containers_of_the_other_compose_major_are_treated_as_changed(self) -> None:
        """v1 and v2 hash differently, so a v1-made container under v2 is changed, and the log says why."""
        action, reason = plan_one({}, containers=[container("web", "c1", compose_version="1.29.2")])
        assert action == "rolling"
        assert "made by compose 1.29.2" in reason

    def test_new_service_is_started(self) -> None:
        """A service with no container yet is simply started."""
        assert plan_one({}, containers=[]) == ("start", "new service: no container yet")

    def test_unchanged_but_stopped_is_brought_back(self) -> None:
        """An unchanged service whose containers all stopped is brought up again in place."""
        stopped = [container("web", "c1", state="exited")]
        assert plan_one({}, config_hash=HASH_A, containers=stopped) == (
            "recreate", "unchanged, but no container is running")

    def test_changed_with_nothing_running_is_recreated(self) -> None:
        """Nothing serves, so a rolling update would protect nothing: recreate."""
        action, reason = plan_one({}, containers=[container("web", "c1", state="exited")])
        assert action == "recreate" and reason.endswith("no container is running")


class TestCannotRunTwice:
    @pytest.mark.parametrize("ports", [["8000:8000/tcp"], ["127.0.0.1:8000:8000/tcp"],
                                       [{"target": 8000, "published": "8000", "host_ip": "0.0.0.0"}]])
    def test_fixed_host_port_is_recreated(self, ports: list[Any]) -> None:
        """A fixed host port (v1 short or v2 long syntax) cannot be bound twice: recreate, naming the port."""
        action, reason = plan_one({"ports": ports})
        assert action == "recreate"
        assert "cannot run twice: publishes fixed host port 8000" in reason

    @pytest.mark.parametrize("ports", [["127.0.0.1::80/tcp"], ["80/tcp"], ["8000-8010:80/tcp"],
                                       [{"target": 80, "host_ip": "127.0.0.1"}], ["[::1]::80/tcp"]])
    def test_ephemeral_ports_still_roll(self, ports: list[Any]) -> None:
        """Ephemeral host ports and port ranges fit two containers: the service rolls."""
        assert plan_one({"ports": ports})[0] == "rolling"

    def test_container_name_is_recreated(self) -> None:
        """A fixed container_name cannot exist twice."""
        action, reason = plan_one({"container_name": "shop-web"})
        assert (action, reason.endswith("cannot run twice: sets container_name 'shop-web'")) == ("recreate", True)

    def test_host_network_is_recreated(self) -> None:
        """network_mode: host would clash on every port the service listens on."""
        assert plan_one({"network_mode": "host"}) == (
            "recreate", "config changed (hash aaaaaaaaaaaa -> bbbbbbbbbbbb); cannot run twice: uses network_mode: host")

    @pytest.mark.parametrize("volumes", [["pgdata:/var/lib/postgresql/data:rw"],
                                         [{"type": "volume", "source": "pgdata", "target": "/data"}]])
    def test_named_volume_must_not_run_twice(self, volumes: list[Any]) -> None:
        """Two databases on one named volume would corrupt it: recreate, saying 'must not'."""
        action, reason = plan_one({"volumes": volumes})
        assert action == "recreate"
        assert reason.endswith("must not run twice: mounts named volume 'pgdata'")

    @pytest.mark.parametrize("volumes", [["/srv/app:/code:rw"], ["./src:/code"], ["/data"],
                                         [{"type": "bind", "source": "/srv/app", "target": "/code"}],
                                         [{"type": "tmpfs", "target": "/tmp"}], [{"type": "volume", "target": "/x"}]])
    def test_bind_mounts_and_anonymous_volumes_still_roll(self, volumes: list[Any]) -> None:
        """Bind mounts, tmpfs and anonymous volumes are per container or shared read paths: the service rolls."""
        assert plan_one({"volumes": volumes})[0] == "rolling"

    def test_label_forces_recreate(self) -> None:
        """`hooksvc.strategy: recreate` recreates a service that could roll."""
        action, reason = plan_one({"labels": {"hooksvc.strategy": "recreate"}})
        assert action == "recreate" and reason.endswith("label hooksvc.strategy=recreate")

    def test_label_forces_rolling_and_names_what_it_overrides(self) -> None:
        """`hooksvc.strategy: rolling` rolls a volume-backed service anyway; the reason shows what was overridden."""
        action, reason = plan_one({"labels": ["hooksvc.strategy=rolling"], "volumes": ["cache:/cache"]})
        assert action == "rolling"
        assert reason.endswith("label hooksvc.strategy=rolling; overrides: mounts named volume 'cache'")

    def test_bad_label_value_is_an_error(self) -> None:
        """A misspelt strategy label fails the deployment with the accepted values."""
        with pytest.raises(DeployError, match="must be 'rolling' or 'recreate', got 'blue-green'"):
            plan_one({"labels": {"hooksvc.strategy": "blue-green"}})


class TestWholePlan:
    def test_dependencies_first_orphans_listed(self) -> None:
        """Services come in dependency order; containers of removed services are orphans."""
        services: dict[str, dict[str, Any]] = {
            "web": {"depends_on": {"db": {"condition": "service_started"}}},
            "db": {},
            "worker": {"depends_on": ["db", "web"]},
        }
        containers = [container("web", "w1"), container("db", "d1"), container("old", "o1")]
        plan = plan_rollout(services, {"web": HASH_B, "db": HASH_A, "worker": HASH_A},
                            {"web": IMAGE_A, "db": IMAGE_A, "worker": None}, containers)
        assert [(s.service, s.action) for s in plan.services] == [
            ("db", "unchanged"), ("web", "rolling"), ("worker", "start")]
        assert [c.id for c in plan.orphans] == ["o1"]
        assert plan.describe()[-1] == "old: remove orphan p-old-o1 (service no longer in the compose files)"

    def test_rolling_starts_as_many_as_run_or_as_asked(self) -> None:
        """A rolling update starts as many new containers as run now, or `deploy.replicas` when set."""
        two = [container("web", "c1"), container("web", "c2")]
        plan = plan_rollout({"web": {}}, {"web": HASH_B}, {"web": IMAGE_A}, two)
        assert plan.services[0].replicas == 2 and plan.services[0].old == ("c1", "c2")
        plan = plan_rollout({"web": {"deploy": {"replicas": 3}}}, {"web": HASH_B}, {"web": IMAGE_A}, two)
        assert plan.services[0].replicas == 3

    def test_dependency_cycle_is_an_error(self) -> None:
        """A dependency cycle is reported rather than looped over."""
        with pytest.raises(DeployError, match="cycle"):
            dependency_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}})


class TestHelpers:
    @pytest.mark.parametrize(("text", "seconds"), [
        ("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), (15, 15.0), ("", None), ("soon", None),
        ("10s garbage", None), (None, None),
    ])
    def test_compose_durations(self, text: object, seconds: float | None) -> None:
        """stop_grace_period values as compose prints them become seconds; anything else is None."""
        assert parse_go_duration(text) == seconds

    @given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
    def test_duration_sums(self, h: int, m: int, s: int) -> None:
        """`XhYmZs` is X hours plus Y minutes plus Z seconds."""
        assert parse_go_duration(f"{h}h{m}m{s}s") == h * 3600 + m * 60 + s

    def test_port_and_volume_readers(self) -> None:
        """Fixed ports and named volumes are found in both syntaxes."""
        assert fixed_host_ports({"ports": ["9000:80", {"published": 8443, "target": 443}]}) == ["9000", "8443"]
        assert named_volumes({"volumes": ["a:/x", "/h:/y", {"type": "volume", "source": "b"}]}) == ["a", "b"]

    def test_time_to_turn_unhealthy(self) -> None:
        """A healthy container turns unhealthy within interval + retries x (interval + timeout) of failing."""
        check = {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Timeout": 3_000_000_000, "Retries": 2}
        assert unhealthy_within(check) == 9.0
        assert unhealthy_within({"Test": ["NONE"]}) == 0.0
        assert unhealthy_within({"Test": ["CMD", "true"]}) == 30 + 3 * 60


class TestRecord:
    def test_round_trip(self, tmp_path: Path) -> None:
        """The live-container record is written atomically and read back per service."""
        path = record_path(tmp_path, "shop")
        save_record(path, "shop", "shop", {"web": ["b", "a"], "db": ["d"]})
        assert LiveRecord(path, "shop").load("shop") == {"web": {"a", "b"}, "db": {"d"}}
        assert json.loads(path.read_text())["containers"]["web"] == ["a", "b"]
        assert [p.name for p in path.parent.iterdir()] == ["shop.json"]

    def test_unusable_records_are_ignored(self, tmp_path: Path) -> None:
        """A missing, corrupt or other-project record counts as no record (so nothing is removed)."""
        path = record_path(tmp_path, "shop")
        assert LiveRecord(path, "shop").load("shop") is None
        save_record(path, "shop", "shop-old", {"web": ["a"]})
        assert LiveRecord(path, "shop").load("shop") is None
        path.write_text("{not json")
        assert LiveRecord(path, "shop").load("shop") is None


class TestStrategies:
    @pytest.mark.parametrize(("strategy", "message"), [("blue-green", "unknown strategy 'blue-green'")])
    def test_unsupported_strategies_fail_before_touching_anything(
        self, tmp_path: Path, strategy: str, message: str,
    ) -> None:
        """Strategies the config refuses raise DeployError before any command runs, should an AppConfig be
        built by hand (swarm is deployed by workers/strategies/swarm.py, never by compose_rollout)."""
        app = AppConfig(name="shop", host="github", host_kind="github", repo="acme/shop", clone_url="x",
                        secret=Secret("s"), project="shop", strategy=strategy)
        lines: list[str] = []
        with pytest.raises(DeployError, match=message):
            compose_rollout(app, tmp_path, log=lines.append, state_dir=tmp_path)
        assert lines == []

"""The strategy registry: one implementation per name the core lists, and the pure modules stay pure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hooksvc import defaults
from hooksvc.config import AppConfig, Secret
from hooksvc.errors import DeployError
from hooksvc.strategies import STRATEGIES as CORE_STRATEGIES
from hooksvc.strategies import strategy_info, strategy_names
from workers.release_step_runner import StepRunner
from workers.rollout.planner import ServiceAction
from workers.strategies import STRATEGIES, ComposeStrategy, compose_rollout, strategy_for


def app_with(strategy: str) -> AppConfig:
    return AppConfig(name="shop", host="github", host_kind="github", repo="acme/shop", clone_url="x",
                     secret=Secret("s"), project="shop", strategy=strategy)


class TestRegistry:
    def test_workers_implement_exactly_the_strategies_the_core_lists(self) -> None:
        """Every name config accepts has one implementation, in the same order, and no other is registered."""
        assert list(STRATEGIES) == list(strategy_names()) == ["rolling", "recreate", "swarm"]

    def test_each_implementation_answers_to_its_registered_name(self) -> None:
        """A strategy's own `name` is the key it is registered under (the rollout logs that name)."""
        assert {name: s.name for name, s in STRATEGIES.items()} == {n: n for n in strategy_names()}

    def test_defaults_derive_from_the_registry(self) -> None:
        """The default strategy is the registry's first, and the accepted list is the registry's."""
        assert defaults.STRATEGY == "rolling" == CORE_STRATEGIES[0].name
        assert strategy_names() == defaults.STRATEGIES

    def test_only_swarm_needs_a_manager_and_pushes(self) -> None:
        """What the core knows about each strategy's needs: swarm alone needs a manager and a registry."""
        assert [s.name for s in CORE_STRATEGIES if s.needs_swarm_manager] == ["swarm"]
        assert [s.name for s in CORE_STRATEGIES if s.pushes_to_registry] == ["swarm"]

    def test_compose_strategies_are_the_compose_ones(self) -> None:
        """rolling and recreate roll out through compose; swarm does not."""
        assert [n for n, s in STRATEGIES.items() if isinstance(s, ComposeStrategy)] == ["rolling", "recreate"]

    def test_an_app_gets_the_strategy_it_names(self) -> None:
        """`strategy_for` looks the app's strategy up by name."""
        assert strategy_for(app_with("recreate")) is STRATEGIES["recreate"]

    def test_an_unknown_name_is_refused_with_the_known_ones(self) -> None:
        """A name config would have refused (an AppConfig built by hand) raises DeployError listing the names."""
        expected = "unknown strategy 'blue-green': expected one of rolling, recreate, swarm"
        with pytest.raises(DeployError, match=expected):
            strategy_for(app_with("blue-green"))
        with pytest.raises(KeyError, match="blue-green"):
            strategy_info("blue-green")

    def test_swarm_is_not_rolled_out_with_compose(self, tmp_path: Path) -> None:
        """Asking for a compose rollout of a swarm app fails before anything is logged or run."""
        lines: list[str] = []
        with pytest.raises(DeployError, match="strategy 'swarm' does not roll out with compose"):
            compose_rollout(app_with("swarm"), tmp_path, log=lines.append, state_dir=tmp_path)
        assert lines == []


def test_pure_modules_load_without_redis_rq_docker_or_subprocess() -> None:
    """Importing the planner, the compose model readers and the core's registry loads none of the edges."""
    code = ("import sys, workers.rollout.planner, workers.rollout.model, hooksvc.strategies; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'redis', 'rq', 'docker', 'subprocess'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


class TestInterface:
    def test_every_strategy_can_plan_and_names_its_release_step_runner(self) -> None:
        """Each registered strategy has `plan` and a `release_steps` runner that is a StepRunner."""
        for name, strategy in STRATEGIES.items():
            assert callable(strategy.plan), name
            assert issubclass(strategy.release_steps, StepRunner), name

    def test_recreate_plans_a_rolling_update_as_a_recreate(self) -> None:
        """The recreate strategy replaces changed services in place, so its plan never says rolling."""
        recreate, rolling = STRATEGIES["recreate"], STRATEGIES["rolling"]
        assert isinstance(recreate, ComposeStrategy) and isinstance(rolling, ComposeStrategy)
        assert recreate.planned_action(ServiceAction.ROLLING) is ServiceAction.RECREATE
        assert rolling.planned_action(ServiceAction.ROLLING) is ServiceAction.ROLLING
        assert recreate.planned_action(ServiceAction.UNCHANGED) is ServiceAction.UNCHANGED

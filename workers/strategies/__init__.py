"""The deploy strategies, one module each, registered here by the name an app's `strategy` gives.

The names and what each needs are the core's (hooksvc/strategies.py: config validation and
`check-config` read them there); this registry maps each name to its implementation, a
`Strategy` (workers/strategies/base.py), and a test keeps the two lists equal.

Adding a strategy: an entry in hooksvc/strategies.py, a module here with a class that has the
`Strategy` methods, and one line in `STRATEGIES` below (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import redis

from hooksvc.config import AppConfig
from hooksvc.errors import DeployError
from hooksvc.logs import LogFn
from hooksvc.strategies import strategy_names
from workers.rollout.context import RolloutResult
from workers.strategies.base import ComposeStrategy, Release, Strategy
from workers.strategies.recreate import Recreate
from workers.strategies.rolling import Rolling
from workers.strategies.swarm import Swarm

__all__ = ["STRATEGIES", "ComposeStrategy", "Release", "Strategy", "compose_rollout", "strategy_for"]

#: Every strategy by name, in the core's order.
STRATEGIES: Mapping[str, Strategy] = MappingProxyType({s.name: s for s in (Rolling(), Recreate(), Swarm())})


def strategy_for(app: AppConfig) -> Strategy:
    """The strategy `app` names; DeployError for a name config would have refused (an AppConfig built by hand)."""
    strategy = STRATEGIES.get(app.strategy)
    if strategy is None:
        raise DeployError(f"unknown strategy {app.strategy!r}: expected one of {', '.join(strategy_names())}")
    return strategy


def compose_rollout(app: AppConfig, release_dir: Path, *, log: LogFn, state_dir: Path,
                    shared: redis.Redis | None = None) -> RolloutResult:
    """Roll a compose app's release out with its strategy, and say what happened to each service."""
    strategy = strategy_for(app)
    if not isinstance(strategy, ComposeStrategy):
        raise DeployError(f"strategy {app.strategy!r} does not roll out with compose")
    return strategy.roll_out_compose(Release(app, release_dir, "", "", log, state_dir, shared))

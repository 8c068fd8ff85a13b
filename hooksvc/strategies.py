"""The deploy strategies an app can name (`strategy = ...`), and what each one needs: the one list.

Config validation, `hooksvc check-config` and the docs read the names and needs from here; the
deploy side (`workers.strategies`) registers one implementation per name, and a test keeps the two
lists equal. The core cannot import the implementations (they talk to Docker), so what config must
know about a strategy before any worker runs lives here, as data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrategyInfo:
    """What the core knows of one strategy: its name and what it needs."""

    name: str
    #: It deploys a Swarm stack: its engine must be a Swarm manager.
    needs_swarm_manager: bool = False
    #: It can push release images to the app's `registry` (the only strategy that may set one).
    pushes_to_registry: bool = False
    #: It runs pull-request previews: each a compose project of its own on the app's engine.
    previews: bool = True


#: Every strategy, the default first. Adding one: an entry here, a module in workers/strategies/.
STRATEGIES: tuple[StrategyInfo, ...] = (
    #: New containers beside the old, health gate, drain, then the old ones stop.
    StrategyInfo("rolling"),
    #: Compose replaces every changed container in place (brief downtime accepted).
    StrategyInfo("recreate"),
    #: A Docker Swarm stack, rolled out and rolled back by Swarm.
    StrategyInfo("swarm", needs_swarm_manager=True, pushes_to_registry=True, previews=False),
)


def strategy_names() -> tuple[str, ...]:
    """The names an app's `strategy` may take, the default first."""
    return tuple(s.name for s in STRATEGIES)


def strategy_info(name: str) -> StrategyInfo:
    """The strategy called `name`; KeyError names the known ones (config has refused others already)."""
    for info in STRATEGIES:
        if info.name == name:
            return info
    raise KeyError(f"unknown strategy {name!r}: expected one of {', '.join(strategy_names())}")

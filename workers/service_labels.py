"""A release's own settings for its rollout (`hooksvc.*` labels, `stop_grace_period`), checked before anything changes.

The labels are the pusher's, like the rest of the compose file: a value the rollout cannot use
(`hooksvc.drain_seconds: "inf"`, a week's `stop_grace_period`) is refused with the service, the key
and the value before the build, never met half-way through a rollout with both releases running.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hooksvc import defaults
from hooksvc.errors import DeployError
from workers.rollout.model import DRAIN_SECONDS_LABEL, parse_go_duration, service_labels
from workers.rollout.planner import STRATEGY_LABEL

#: What `hooksvc.strategy` may say.
STRATEGY_VALUES = ("rolling", "recreate")


def retire_wait_seconds(value: object) -> float | None:
    """Seconds from a drain pause or stop grace (`3`, `"2.5"`, `"1m30s"`); None unless finite and in range."""
    if isinstance(value, str) and value.strip():
        try:
            seconds: float | None = float(value)
        except ValueError:
            seconds = parse_go_duration(value)
    else:
        seconds = parse_go_duration(value)
    if seconds is None or not math.isfinite(seconds) or not 0 <= seconds <= defaults.MAX_RETIRE_WAIT_SECONDS:
        return None
    return seconds


def check_service_settings(services: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse every service whose rollout labels or stop grace the rollout could not honour (DeployError)."""
    problems: list[str] = []
    limit = f"a number of seconds from 0 to {defaults.MAX_RETIRE_WAIT_SECONDS:g}"
    for name, config in services.items():
        labels = service_labels(config)
        drain = labels.get(DRAIN_SECONDS_LABEL)
        if drain is not None and retire_wait_seconds(drain) is None:
            problems.append(f"service {name}: label {DRAIN_SECONDS_LABEL} must be {limit}, got {drain!r}")
        strategy = labels.get(STRATEGY_LABEL)
        if strategy is not None and strategy.strip().lower() not in STRATEGY_VALUES:
            problems.append(f"service {name}: label {STRATEGY_LABEL} must be 'rolling' or 'recreate', got {strategy!r}")
        grace = config.get("stop_grace_period")
        if grace is not None and retire_wait_seconds(grace) is None:
            problems.append(f"service {name}: stop_grace_period must be {limit}, got {grace!r}")
    if problems:
        raise DeployError("; ".join(problems))

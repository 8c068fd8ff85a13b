"""Readers of a service's resolved compose config (`docker compose config`): pure, no engine, no I/O.

The planner asks them whether a service can run twice, in which order services start and how many
replicas it wants; the drain and the swarm stack file read durations and volumes with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hooksvc.errors import DeployError

#: Label on a container: a shell command run inside it to make its healthcheck fail before it stops.
DRAIN_LABEL = "hooksvc.drain"
#: Label on a container: seconds to wait after draining, for proxies to notice and requests to end.
DRAIN_SECONDS_LABEL = "hooksvc.drain_seconds"


def service_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """Labels as a dict, whether compose printed a mapping or a list of `key=value`."""
    labels = config.get("labels") or {}
    if isinstance(labels, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in labels.items()}
    result: dict[str, str] = {}
    for item in labels:
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


def fixed_host_ports(config: Mapping[str, Any]) -> list[str]:
    """Host ports a service publishes at a fixed number: a second container could not bind them.

    An ephemeral publication (`"80"`, `"127.0.0.1::80"`) or a host port range is not fixed.
    """
    fixed: list[str] = []
    for port in config.get("ports") or []:
        if isinstance(port, Mapping):
            published = str(port.get("published") or "")
        else:
            # v1 short syntax: [[host_ip:]published:]target[/proto]; host_ip may be "[::1]".
            parts = str(port).rsplit(":", 2)
            published = parts[-2] if len(parts) >= 2 else ""
        if published.isdigit():
            fixed.append(published)
    return fixed


def named_volumes(config: Mapping[str, Any]) -> list[str]:
    """Named volumes a service mounts (bind mounts, anonymous volumes and tmpfs are not)."""
    names: list[str] = []
    for volume in config.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                names.append(str(volume["source"]))
            continue
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0] and not parts[0].startswith(("/", ".", "~", "$")):
            names.append(parts[0])
    return names


def desired_replicas(config: Mapping[str, Any], running: int) -> int:
    """Replicas a service asks for (`deploy.replicas`, `scale`), else as many as run now, at least 1."""
    deploy = config.get("deploy") or {}
    for value in (deploy.get("replicas") if isinstance(deploy, Mapping) else None, config.get("scale")):
        if isinstance(value, int | str) and str(value).isdigit() and int(value) > 0:
            return int(value)
    return max(running, 1)


def dependencies(config: Mapping[str, Any]) -> list[str]:
    depends = config.get("depends_on") or []
    return [str(d) for d in depends]  # a list, or a mapping whose keys are the services


def reasons_not_to_run_twice(config: Mapping[str, Any]) -> list[str]:
    """Why a second container of this service cannot (or must not) run beside the first."""
    reasons = [f"publishes fixed host port {port}" for port in fixed_host_ports(config)]
    if config.get("container_name"):
        reasons.append(f"sets container_name {config['container_name']!r}")
    if str(config.get("network_mode") or "") == "host":
        reasons.append("uses network_mode: host")
    reasons += [f"mounts named volume {name!r}" for name in named_volumes(config)]
    return reasons


def dependency_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Service names, each after the services it depends on; ties in name order."""
    ordered: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in services:
            return
        if name in visiting:
            raise DeployError(f"services depend on each other in a cycle through {name!r}")
        visiting.add(name)
        for dep in sorted(dependencies(services[name])):
            visit(dep)
        visiting.discard(name)
        done.add(name)
        ordered.append(name)

    for name in sorted(services):
        visit(name)
    return ordered


def parse_go_duration(value: object) -> float | None:
    """Seconds from a compose duration (`10s`, `1m30s`, `500ms`, or a number); None if unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, pos, text = 0.0, 0, value.strip()
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


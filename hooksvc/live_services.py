"""What an app's services run since its last deployment that went live, kept in Redis.

The worker records it when a release goes live: for strategy swarm the stack's services and the
image (release tag) each one runs, for the compose strategies each service's containers.
`hooksvc status APP`, the API's app overview and the dashboard show it from anywhere, without
talking to Docker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from hooksvc import keys
from hooksvc.connection import call


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    #: What it runs: an image (swarm) or its containers (compose).
    runs: str


@dataclass(frozen=True)
class LiveServices:
    deployment_id: str
    recorded_at: float
    services: tuple[ServiceRecord, ...]


def stack_services(images: Mapping[str, str]) -> list[ServiceRecord]:
    """A swarm stack's services, each with the image its spec runs."""
    return [ServiceRecord(name, image) for name, image in sorted(images.items())]


def compose_services(containers: Mapping[str, Sequence[str]]) -> list[ServiceRecord]:
    """Compose services, each with its containers (short ids)."""
    return [ServiceRecord(name, f"{len(ids)} container(s): " + ", ".join(i[:12] for i in ids))
            for name, ids in sorted(containers.items())]


def record_services(connection: redis.Redis, app: str, deployment_id: str, services: Sequence[ServiceRecord],
                    now: float) -> None:
    document = {"deployment_id": deployment_id, "recorded_at": now,
                "services": [{"name": s.name, "runs": s.runs} for s in services]}
    call(connection.set, keys.app_services(app), json.dumps(document))


def read_services(connection: redis.Redis, app: str) -> LiveServices | None:
    raw = call(connection.get, keys.app_services(app))
    if not raw:
        return None
    document = json.loads(raw)
    return LiveServices(
        deployment_id=str(document["deployment_id"]), recorded_at=float(document["recorded_at"]),
        services=tuple(ServiceRecord(str(s["name"]), str(s["runs"])) for s in document["services"]),
    )

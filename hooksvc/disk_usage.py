"""Disk an app uses on the worker that deployed it (release checkouts and built images), kept in Redis.

Workers measure after each deployment's pruning; `hooksvc status` reads it from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from hooksvc import keys
from hooksvc.connection import call, decode_hash


@dataclass(frozen=True)
class DiskRecord:
    checkouts: int
    images: int
    measured_at: float

    @property
    def total(self) -> int:
        return self.checkouts + self.images


def record_disk_usage(connection: redis.Redis, app: str, checkouts: int, images: int, now: float) -> None:
    call(connection.hset, keys.app_disk(app),
         mapping={"checkouts": str(checkouts), "images": str(images), "measured_at": str(now)})


def read_disk_usage(connection: redis.Redis, app: str) -> DiskRecord | None:
    raw = decode_hash(call(connection.hgetall, keys.app_disk(app)))
    if not raw:
        return None
    return DiskRecord(int(raw["checkouts"]), int(raw["images"]), float(raw["measured_at"]))


def format_bytes(count: int) -> str:
    """`512 B`, `1.5 KiB`, `230.0 MiB`, `1.2 GiB`."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"

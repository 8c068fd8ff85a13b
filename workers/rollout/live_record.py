"""The record of an app's live containers: which container ids serve, per service, after each change.

Left-overs of an interrupted rollout (a worker killed mid-way leaves extra new containers) are
found with it: it lives in `state_dir/rollout/<app>.json`, written whenever the set of containers
meant to serve changes; a worker given the Redis connection also keeps a copy there, so a worker on
another machine that deploys the app next (to the same engine) knows it too, and the newer of the
two is read. Compose's own container numbers and names cannot tell old from new: they are reused
and bumped freely.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from hooksvc import keys
from hooksvc.connection import call
from hooksvc.errors import RedisUnavailable

#: Directory under the worker's state_dir holding one JSON record of live containers per app.
STATE_SUBDIR = "rollout"


def record_path(state_dir: Path, app: str) -> Path:
    return state_dir / STATE_SUBDIR / f"{app}.json"


def save_record(path: Path, app: str, project: str, live: Mapping[str, Iterable[str]]) -> str:
    """Write the record atomically (a worker killed mid-write must not leave half a file); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"app": app, "project": project, "updated": time.time(),
            "containers": {s: sorted(ids) for s, ids in sorted(live.items())}}
    text = json.dumps(data, indent=2) + "\n"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return text


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _parse_record(text: str | bytes | None, project: str) -> tuple[float, dict[str, set[str]]] | None:
    """(when it was written, live container ids per service), or None when it is no usable record."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("project") != project:
        return None
    containers = data.get("containers")
    if not isinstance(containers, dict):
        return None
    updated = data.get("updated")
    return (float(updated) if isinstance(updated, int | float) else 0.0,
            {str(s): {str(i) for i in ids} for s, ids in containers.items() if isinstance(ids, list)})


@dataclass
class LiveRecord:
    """The record of an app's live containers: a file in the worker's state_dir and, given a Redis
    connection, a copy there for workers on other machines. Redis being away costs the copy, never
    the rollout: the file is written first, and the newer of the two is read."""

    path: Path
    app: str
    shared: redis.Redis | None = None

    def __str__(self) -> str:
        return f"{self.path}" + (" or in Redis" if self.shared is not None else "")

    def load(self, project: str) -> dict[str, set[str]] | None:
        found = [r for r in (_parse_record(_read_text(self.path), project), self._load_shared(project)) if r]
        return max(found, key=lambda r: r[0])[1] if found else None

    def save(self, project: str, live: Mapping[str, Iterable[str]]) -> None:
        text = save_record(self.path, self.app, project, live)
        if self.shared is not None:
            with contextlib.suppress(RedisUnavailable):
                call(self.shared.set, keys.app_rollout_record(self.app), text)

    def _load_shared(self, project: str) -> tuple[float, dict[str, set[str]]] | None:
        if self.shared is None:
            return None
        try:
            return _parse_record(call(self.shared.get, keys.app_rollout_record(self.app)), project)
        except RedisUnavailable:
            return None

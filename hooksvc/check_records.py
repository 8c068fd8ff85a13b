"""The check reports known on each gated commit, in Redis: what webhooks said and what the host's
check API answered, newest write winning per check name (see `hooksvc.ci_checks`)."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from hooksvc import defaults, keys
from hooksvc.ci_checks import CheckEvent, CheckReport
from hooksvc.connection import call


class CheckRecords:
    """Record and read the check reports of one app's commit. Pass a Redis client in."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def record(self, app: str, event: CheckEvent) -> None:
        """Write a webhook's reports (and its request to read the host's API) for `app`'s commit."""
        self.write(app, event.sha, event.reports)
        if event.refresh:
            call(self.redis.set, keys.commit_checks_refresh(app, event.sha), "1",
                 ex=defaults.CHECKS_RECORD_TTL_SECONDS)

    def write(self, app: str, sha: str, reports: Iterable[CheckReport]) -> None:
        mapping = {r.name: r.to_json() for r in reports}
        if not mapping:
            return
        key = keys.commit_checks(app, sha)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, defaults.CHECKS_RECORD_TTL_SECONDS)
            call(pipe.execute)

    def read(self, app: str, sha: str) -> dict[str, CheckReport]:
        """The reports known on `app`'s commit `sha`, by name."""
        raw = call(self.redis.hgetall, keys.commit_checks(app, sha))
        return {name.decode(): CheckReport.from_json(value) for name, value in sorted(raw.items())}

    def take_refresh(self, app: str, sha: str) -> bool:
        """Whether a webhook asked for the host's API to be read for this commit (and clear the ask)."""
        return call(self.redis.getdel, keys.commit_checks_refresh(app, sha)) is not None

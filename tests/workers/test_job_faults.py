"""A deploy job meets a Redis that goes away at each step: the deployment still ends in a final state
with the reason, and nothing is lost once Redis is back (a real redis-server, stopped and restarted
with its append-only file, and real git)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hooksvc.connection import connect
from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.errors import RedisUnavailable
from hooksvc.store import DeploymentStore
from tests.helpers.config import make_config
from tests.helpers.redis_server import RedisServer
from workers import jobs
from workers.locks import AppLock

#: How long each injected outage lasts: a Redis restart.
OUTAGE_SECONDS = 1.0


#: Restarts scheduled by `outage_on_first_call`, joined before the server is stopped for good.
_RESTARTS: list[threading.Timer] = []


@pytest.fixture(autouse=True)
def restarts_done(own_redis: RedisServer) -> Iterator[None]:
    """Join the restarts `outage_on_first_call` scheduled before `own_redis` stops the server for good."""
    yield
    while _RESTARTS:
        _RESTARTS.pop().join()


def outage_on_first_call(server: RedisServer, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, except that its first call stops Redis first and starts it again `OUTAGE_SECONDS` later."""
    calls = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append(1)
            server.stop()
            restart = threading.Timer(OUTAGE_SECONDS, server.start)
            _RESTARTS.append(restart)
            restart.start()
        return fn(*args, **kwargs)

    return wrapped


#: Where the outage hits, and whether the deployment had started by then.
STEPS = {
    "reading the deployment": False,
    "taking the app lock": False,
    "starting": False,
    "writing a log line": True,
    "recording the outcome": True,
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_redis_outage_at_any_step_still_ends_the_deployment(
    tmp_path: Path, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, step: str,
) -> None:
    """Before the deployment starts an outage ends it `error` naming Redis; once it runs, the outage only
    delays its log and record: it ends with its own outcome (here `failed`: the origin does not exist)."""
    config = make_config(tmp_path)
    connection = connect(own_redis.url)
    store = DeploymentStore(connection)
    manual = NewDeployment("shop", "", "refs/heads/main", Trigger.MANUAL, forced=True)
    dep = store.intake.submit([manual]).deployments[0]
    if step == "reading the deployment":
        monkeypatch.setattr(store, "find", outage_on_first_call(own_redis, store.find))
    elif step == "taking the app lock":
        monkeypatch.setattr(AppLock, "try_acquire", outage_on_first_call(own_redis, AppLock.try_acquire))
    elif step == "starting":
        monkeypatch.setattr(store, "start", outage_on_first_call(own_redis, store.start))
    elif step == "writing a log line":
        monkeypatch.setattr(store.logs, "append", outage_on_first_call(own_redis, store.logs.append))
    else:
        monkeypatch.setattr(store, "finish", outage_on_first_call(own_redis, store.finish))

    if STEPS[step]:
        assert jobs.execute(config, store, connection, dep.id) == "failed"
    else:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the Redis error itself, whatever its class
            jobs.execute(config, store, connection, dep.id)
        assert "Redis" in str(raised.value) or "Connection" in type(raised.value).__name__

    done = DeploymentStore(connect(own_redis.url)).get(dep.id)
    assert done.state.is_final, done
    lines = store.logs.read(dep.id)[0]
    if STEPS[step]:
        assert done.state is DeploymentState.FAILED, done.error
        assert any(line.startswith("==> fetching") for line in lines), lines
        assert lines[-1].startswith("finished: failed")
    else:
        assert done.state is DeploymentState.ERROR
        assert done.error.startswith("internal error:"), done.error


def test_a_long_outage_gives_up_after_its_patience(own_redis: RedisServer) -> None:
    """`wait_out_redis` retries while Redis is away and raises once its patience is spent."""
    connection = connect(own_redis.url)
    own_redis.stop()
    with pytest.raises(RedisUnavailable):
        jobs.wait_out_redis(lambda: DeploymentStore(connection).ping(), "ping", patience=0.5)

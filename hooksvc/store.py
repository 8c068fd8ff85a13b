"""Deployment records, dedupe, coalescing, state changes and logs, all in Redis.

A webhook's writes (dedupe, record, coalescing, intake entry) are one Lua script: all or nothing
in one round trip. The RQ job and the listeners' events follow from the intake entry in a
dispatcher; every other state change is a MULTI/EXEC transaction guarded by WATCH, retried when
another writer got there first.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue

from hooksvc import defaults
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment
from hooksvc.errors import Conflict, NotFound, QueueUnavailable

log = logging.getLogger(__name__)

PREFIX = "hooksvc"
#: The RQ job every deployment runs as; named by string so the web side never imports the workers.
DEPLOY_JOB = "workers.jobs.run_deployment"
#: Hook called inside a transaction when a deployment changes state (used by status reporting).
StateListener = Callable[[Pipeline, Deployment], None]


def connect(url: str) -> redis.Redis:
    """A Redis client with short timeouts: webhooks must be answered within seconds."""
    return redis.Redis.from_url(
        url,
        socket_timeout=defaults.REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=defaults.REDIS_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


def _key(*parts: str) -> str:
    return ":".join((PREFIX, *parts))


#: The SET of ids of running deployments (the reaper's work list).
RUNNING_KEY = _key("running")
#: Submitted deployments whose RQ jobs and listener events are still to be written (a LIST of
#: "new ids;superseded ids;time" entries, see IntakeEntry).
INTAKE_KEY = _key("intake")
#: Intake entries a dispatcher is working on.
INTAKE_PROCESSING_KEY = _key("intake", "processing")

#: Webhook requests by outcome and provider (a HASH of "outcome:provider" counters; see hooksvc.metrics).
WEBHOOKS_KEY = _key("metrics", "webhooks")
#: The last deployment id handed out. Ids are dense and only grow, so counting down from it lists
#: every deployment newest first without an index written on each webhook.
NEXT_ID_KEY = _key("deployment", "next")


def app_index_key(app: str) -> str:
    """One app's deployment ids, newest first (a LIST: ids only grow, so pushing keeps the order)."""
    return _key("app", app, "index")


def seen_key(bucket: int) -> str:
    """The HASH of the deliveries first seen in one `DEDUPE_BUCKET_SECONDS` period: id -> first answer."""
    return _key("seen", str(bucket))


#: Dedupe records live in one HASH per period of DEDUPE_TTL_SECONDS, which expires as a whole a period
#: after it ends, and a lookup reads the current and the previous period: an entry is kept between
#: one and two periods. A field in an existing hash costs Redis a fraction of a new key with its own
#: expiry, and two periods are two reads per webhook.
DEDUPE_BUCKET_SECONDS = defaults.DEDUPE_TTL_SECONDS

# ARGV: now, metric field suffix ("" counts nothing), number n of dedupe ids, the n ids; then per
#       deployment: app, sha and the field/value pairs of its record, ending with an empty field name.
# Returns {"dup", first answer} or {"ok", {new ids}, {ids of the deployments they superseded}}.
# The dedupe hashes hold the first answer as "id app sha" per deployment, comma-separated; an
# intake entry is "new ids;superseded ids;now" (ids comma-separated). Plain strings, flat arguments
# and constant key names, no cjson, as few writes as the rules allow: every argument, redis.call and
# write (each is appended to the AOF) is paid for on every webhook, in Redis's one thread.
SUBMIT_SCRIPT = """
local now, metric, nseen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local bucket = math.floor(tonumber(now) / @BUCKET@)
if nseen > 0 then
  for back = 0, 1 do
    for _, first in ipairs(redis.call('HMGET', '@PREFIX@:seen:' .. (bucket - back), unpack(ARGV, 4, 3 + nseen))) do
      if first then
        if metric ~= '' then redis.call('HINCRBY', '@WEBHOOKS@', 'duplicate:' .. metric, 1) end
        return {'dup', first}
      end
    end
  end
end
local created, superseded, answer = {}, {}, {}
local a = 4 + nseen
while a <= #ARGV do
  local app, sha, from = ARGV[a], ARGV[a + 1], a + 2
  a = from
  while ARGV[a] ~= '' do a = a + 2 end
  local id = tostring(redis.call('INCR', '@NEXT@'))
  redis.call('HSET', '@PREFIX@:deployment:' .. id, 'id', id, 'state', 'queued', 'created_at', now,
             unpack(ARGV, from, a - 1))
  a = a + 1
  redis.call('LPUSH', '@PREFIX@:app:' .. app .. ':index', id)
  local old = redis.call('SET', '@PREFIX@:app:' .. app .. ':queued', id, 'GET')
  if old then
    local okey = '@PREFIX@:deployment:' .. old
    if redis.call('HGET', okey, 'state') == 'queued' then
      local why = 'superseded by ' .. string.sub(sha, 1, 12) .. ' (deployment ' .. id .. ')'
      redis.call('HSET', okey, 'state', 'superseded', 'finished_at', now, 'error', why)
      superseded[#superseded + 1] = old
    end
  end
  created[#created + 1] = id
  answer[#answer + 1] = id .. ' ' .. app .. ' ' .. sha
end
if nseen > 0 then
  local first, seen, fields = table.concat(answer, ','), '@PREFIX@:seen:' .. bucket, {}
  for i = 4, 3 + nseen do fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = first end
  local fresh = redis.call('EXISTS', seen) == 0
  redis.call('HSET', seen, unpack(fields))
  if fresh then redis.call('EXPIREAT', seen, (bucket + 2) * @BUCKET@) end
end
redis.call('RPUSH', '@INTAKE@', table.concat(created, ',') .. ';' .. table.concat(superseded, ',') .. ';' .. now)
if metric ~= '' then redis.call('HINCRBY', '@WEBHOOKS@', 'accepted:' .. metric, 1) end
return {'ok', created, superseded}
"""
for _name, _value in (("@PREFIX@", PREFIX), ("@INTAKE@", INTAKE_KEY), ("@WEBHOOKS@", WEBHOOKS_KEY),
                      ("@NEXT@", NEXT_ID_KEY), ("@BUCKET@", str(DEDUPE_BUCKET_SECONDS))):
    SUBMIT_SCRIPT = SUBMIT_SCRIPT.replace(_name, _value)


def job_id_for(deployment_id: str) -> str:
    return f"deploy-{deployment_id}"


@dataclass(frozen=True)
class SubmitResult:
    deployments: tuple[Deployment, ...]
    #: Set when the delivery had been seen before: the summaries answered the first time.
    duplicate_of: tuple[dict[str, str], ...] | None = None
    #: Ids of the queued deployments the new ones replaced.
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveRelease:
    app: str
    sha: str
    deployment_id: str
    since: float


@dataclass(frozen=True)
class IntakeEntry:
    """What one submit left for the dispatcher: "new ids;superseded ids;time" (see SUBMIT_SCRIPT)."""

    created: tuple[str, ...]
    superseded: tuple[str, ...]
    at: float

    @classmethod
    def parse(cls, raw: bytes) -> IntakeEntry:
        created, superseded, at = raw.decode().split(";")
        return cls(tuple(created.split(",")) if created else (),
                   tuple(superseded.split(",")) if superseded else (), float(at))


def first_answer(raw: bytes) -> tuple[dict[str, str], ...]:
    """The summaries a delivery's first answer listed, from its dedupe record ("id app sha,...")."""
    out = []
    for item in filter(None, raw.decode().split(",")):
        deployment_id, app, sha = item.split(" ")
        out.append({"id": deployment_id, "app": app, "sha": sha, "state": str(DeploymentState.QUEUED)})
    return tuple(out)


def direct_command(client: redis.Redis, *args: Any) -> Any:
    """Run one command on a connection of `client`'s pool and return Redis's unparsed reply.

    `client.execute_command` wraps every command in retry, observability and response-callback
    layers that cost as much client CPU as the round trip itself; the webhook path runs one command
    and needs none of them. The pool still checks a connection before handing it out (reconnecting
    one Redis closed), and a connection that fails is dropped and the command tried once more on a
    new one, as the client's default retry would. (When only the reply was lost the command runs
    twice; for the submit script the second run finds the first's dedupe record and answers with
    its deployments as a duplicate, so nothing is recorded twice.)
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        try:
            conn.send_command(*args)
            return conn.read_response()
        except redis.ConnectionError:
            conn.disconnect()
            conn.send_command(*args)
            return conn.read_response()
    except BaseException as exc:
        if not isinstance(exc, redis.ResponseError):
            conn.disconnect()  # a reply may be half read: never hand this connection out again
        raise
    finally:
        pool.release(conn)


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}



class DeploymentStore:
    """All of hooksvc's state. Pass a Redis client in; nothing here is global."""

    def __init__(
        self,
        connection: redis.Redis,
        job_timeout: float = defaults.JOB_TIMEOUT_SECONDS,
        listeners: Sequence[StateListener] = (),
        dispatch_inline: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = connection
        #: Time of a submit (created_at, dedupe periods); tests move it forward.
        self.clock = clock
        self.queue = Queue(defaults.QUEUE_NAME, connection=connection)
        self.job_timeout = job_timeout
        self.listeners = list(listeners)
        #: Dispatch the intake right after each submit. The web app turns this off: its answer must
        #: not wait for RQ and the listeners, which the workers' dispatcher threads then take care of.
        self.dispatch_inline = dispatch_inline
        self._submit_sha = hashlib.sha1(SUBMIT_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so

    # -- writing -----------------------------------------------------------------------------

    def _transaction(self, watch: Sequence[str], body: Callable[[Pipeline], Any]) -> Any:
        """Run `body` under WATCH, retrying on a concurrent write; Redis errors become 503s."""
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        if watch:
                            pipe.watch(*watch)
                        result = body(pipe)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise QueueUnavailable(f"Redis is unreachable: {exc}") from None

    def _notify(self, pipe: Pipeline, deployment: Deployment) -> None:
        for listener in self.listeners:
            listener(pipe, deployment)

    def submit(
        self,
        requests: Sequence[NewDeployment],
        dedupe_keys: Sequence[str] = (),
        webhook_provider: str = "",
    ) -> SubmitResult:
        """Record deployments atomically, coalescing per app and deduplicating deliveries.

        One Lua script does it all in one round trip: a webhook must be answered fast, and a
        WATCH transaction under concurrent pushes for one app retried over and over. `dedupe_keys`
        identify the delivery (its id, a hash of its signed body); when any of them was seen in the
        last `DEDUPE_TTL_SECONDS`, nothing is written and the first answer returns. The RQ job and
        the listeners' writes follow in `dispatch_intake`, from the intake entry written here.
        `webhook_provider` counts the webhook's outcome (accepted or duplicate) in the same script.
        """
        now = self.clock()
        args: list[object] = [repr(now), webhook_provider, len(dedupe_keys), *dedupe_keys]
        for r in requests:
            args += (r.app, r.sha, *r.record_fields(), "")
        reply = self.redis_call(self._run_submit_script, args)
        if reply[0] == b"dup":
            return SubmitResult(deployments=(), duplicate_of=first_answer(reply[1]))
        created = tuple(
            Deployment.create(i.decode(), r, now) for i, r in zip(reply[1], requests, strict=True)
        )
        superseded = tuple(i.decode() for i in reply[2])
        if self.dispatch_inline:
            self.dispatch_intake()
        return SubmitResult(deployments=created, superseded=superseded)

    def _run_submit_script(self, args: Sequence[object]) -> Any:
        # EVALSHA on a pooled connection directly: redis-py's Script wrapper and its per-command
        # layers cost as much again on this hot path. Loaded on first use and after a Redis restart.
        try:
            return direct_command(self.redis, "EVALSHA", self._submit_sha, 0, *args)
        except redis.exceptions.NoScriptError:
            self._submit_sha = self.redis.script_load(SUBMIT_SCRIPT)
            return direct_command(self.redis, "EVALSHA", self._submit_sha, 0, *args)

    def dispatch_intake(self, block_seconds: float | None = None) -> int:
        """Turn intake entries into RQ jobs and listener events; returns how many entries were done.

        Each entry moves to a processing list first (LMOVE) and leaves it in the same transaction
        that writes its jobs and events, so a dispatcher that dies mid-way loses nothing:
        `recover_intake` puts the entry back. Doing an entry twice is harmless: a job whose
        deployment is no longer queued ends at once.
        """
        done = 0
        while True:
            if block_seconds is not None and done == 0:
                raw = self.redis_call(self.redis.blmove, INTAKE_KEY, INTAKE_PROCESSING_KEY, block_seconds,
                                      "LEFT", "RIGHT")
            else:
                raw = self.redis_call(self.redis.lmove, INTAKE_KEY, INTAKE_PROCESSING_KEY, "LEFT", "RIGHT")
            if raw is None:
                return done
            self._dispatch_entry(raw)
            done += 1

    def _dispatch_entry(self, raw: bytes) -> None:
        entry = IntakeEntry.parse(raw)
        ids = [*entry.superseded, *entry.created]

        def body(pipe: Pipeline) -> list[Deployment]:
            deps = {i: self._load(pipe, i) for i in ids}
            pipe.multi()
            for i in entry.superseded:
                old = deps[i]
                pipe.lrem(self.queue.key, 0, job_id_for(i))
                if old is not None and old.state is DeploymentState.SUPERSEDED:
                    self._log_in(pipe, i, old.error)
                    self._notify(pipe, old)
            queued = []
            for i in entry.created:
                dep = deps[i]
                if dep is None:
                    continue
                self._log_in(pipe, i, f"queued {dep.trigger} of {dep.sha or dep.ref} ({dep.ref or 'no ref'})")
                if dep.state is DeploymentState.QUEUED:
                    self._enqueue_job(pipe, dep)
                    self._notify(pipe, dep)
                    queued.append(dep)
            pipe.lrem(INTAKE_PROCESSING_KEY, 1, raw)
            return queued

        queued: list[Deployment] = self._transaction([_key("deployment", i) for i in ids], body)
        # The server log's line per accepted deployment is written here, not in the web process:
        # at hundreds of webhooks a second, a log line is a measurable share of the answer.
        for dep in queued:
            via = f", delivery {dep.delivery_id}" if dep.delivery_id else ""
            log.info("deployment %s of %s queued: %s of %s (%s)%s",
                     dep.id, dep.app, dep.trigger, dep.sha[:12] or dep.ref, dep.ref or "no ref", via)
        if entry.superseded:
            log.info("deployment(s) %s superseded", ", ".join(entry.superseded))

    def recover_intake(self, older_than: float = defaults.INTAKE_RECOVER_SECONDS) -> int:
        """Put back intake entries a dead dispatcher left in processing for longer than `older_than`."""
        recovered = 0
        for raw in self.redis_call(self.redis.lrange, INTAKE_PROCESSING_KEY, 0, -1):
            if time.time() - IntakeEntry.parse(raw).at < older_than:
                continue
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrem(INTAKE_PROCESSING_KEY, 1, raw)
                pipe.rpush(INTAKE_KEY, raw)
                removed, _ = self.redis_call(pipe.execute)
            if not removed:
                # Another recoverer (or the slow dispatcher itself) got there first: undo our push.
                self.redis_call(self.redis.lrem, INTAKE_KEY, -1, raw)
                continue
            recovered += 1
        return recovered

    def _enqueue_job(self, pipe: Pipeline, dep: Deployment) -> None:
        self.queue.enqueue_call(
            DEPLOY_JOB,
            args=(dep.id,),
            job_id=job_id_for(dep.id),
            timeout=int(self.job_timeout),
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"deploy {dep.app} {dep.sha[:12]} (deployment {dep.id})",
            pipeline=pipe,
        )

    def cancel(self, deployment_id: str) -> Deployment:
        """Cancel a queued deployment; Conflict when it already started or ended."""
        dkey = _key("deployment", deployment_id)

        def body(pipe: Pipeline) -> Deployment:
            dep = self._load(pipe, deployment_id)
            if dep is None:
                raise NotFound(f"no deployment {deployment_id!r}")
            if dep.state is not DeploymentState.QUEUED:
                raise Conflict(f"deployment {deployment_id} is {dep.state}, only a queued one can be cancelled")
            qkey = _key("app", dep.app, "queued")
            pipe.watch(qkey)
            current = pipe.get(qkey)
            done = replace(dep, state=DeploymentState.CANCELLED, finished_at=time.time(), error="cancelled")
            pipe.multi()
            pipe.hset(dkey, mapping=done.to_fields())
            if current is not None and current.decode() == deployment_id:
                pipe.delete(qkey)
            pipe.lrem(self.queue.key, 0, job_id_for(deployment_id))
            self._log_in(pipe, deployment_id, "cancelled by an operator")
            self._notify(pipe, done)
            return done

        return self._transaction([dkey], body)  # type: ignore[no-any-return]

    def start(self, deployment_id: str, previous_sha: str) -> Deployment | None:
        """queued → running; None when the deployment is no longer queued (superseded, cancelled)."""
        dkey = _key("deployment", deployment_id)

        def body(pipe: Pipeline) -> Deployment | None:
            dep = self._load(pipe, deployment_id)
            if dep is None or dep.state is not DeploymentState.QUEUED:
                pipe.unwatch()
                return None
            qkey = _key("app", dep.app, "queued")
            pipe.watch(qkey)
            current = pipe.get(qkey)
            running = replace(dep, state=DeploymentState.RUNNING, started_at=time.time(), previous_sha=previous_sha)
            pipe.multi()
            pipe.hset(dkey, mapping=running.to_fields())
            if current is not None and current.decode() == deployment_id:
                pipe.delete(qkey)
            pipe.sadd(RUNNING_KEY, deployment_id)
            self._notify(pipe, running)
            return running

        return self._transaction([dkey], body)  # type: ignore[no-any-return]

    def finish(
        self,
        deployment_id: str,
        state: DeploymentState,
        error: str = "",
        live_sha: str | None = None,
    ) -> Deployment | None:
        """running|queued → a final state; records the live release on success. None if already final."""
        if not state.is_final:
            raise ValueError(f"finish() needs a final state, got {state}")
        dkey = _key("deployment", deployment_id)

        def body(pipe: Pipeline) -> Deployment | None:
            dep = self._load(pipe, deployment_id)
            if dep is None or dep.state.is_final:
                pipe.unwatch()
                return None
            now = time.time()
            done = replace(dep, state=state, finished_at=now, error=error)
            qkey = _key("app", dep.app, "queued")
            pipe.watch(qkey)
            current = pipe.get(qkey)
            pipe.multi()
            pipe.hset(dkey, mapping=done.to_fields())
            pipe.srem(RUNNING_KEY, deployment_id)
            if current is not None and current.decode() == deployment_id:
                pipe.delete(qkey)
            if live_sha is not None:
                pipe.hset(_key("app", dep.app, "live"), mapping={
                    "sha": live_sha, "deployment_id": deployment_id, "since": str(now),
                })
            line = f"finished: {state}" + (f": {error}" if error else "")
            self._log_in(pipe, deployment_id, line)
            self._notify(pipe, done)
            return done

        return self._transaction([dkey], body)  # type: ignore[no-any-return]

    def set_sha(self, deployment_id: str, sha: str) -> None:
        """Record the sha a manual deployment resolved to; listeners hear of it (its commit gets `pending`)."""
        dkey = _key("deployment", deployment_id)

        def body(pipe: Pipeline) -> None:
            dep = self._load(pipe, deployment_id)
            if dep is None:
                pipe.unwatch()
                return
            resolved = replace(dep, sha=sha)
            pipe.multi()
            pipe.hset(dkey, "sha", sha)
            self._notify(pipe, resolved)

        self._transaction([dkey], body)

    def reap_abandoned(self) -> builtins.list[Deployment]:
        """End `error` every running deployment whose worker no longer holds its app's lock.

        The holder renews the lock every few seconds; a lock that expired (or that another
        deployment now holds) means the worker died mid-deployment.
        """
        reaped: builtins.list[Deployment] = []
        for deployment_id in self.running_ids():
            dep = self.find(deployment_id)
            if dep is None:
                self.redis_call(self.redis.srem, RUNNING_KEY, deployment_id)
                continue
            holder = self.redis_call(self.redis.get, app_lock_key(dep.app))
            if holder is not None and holder.decode() == deployment_id:
                continue
            done = self.finish(deployment_id, DeploymentState.ERROR, "the worker running this deployment died")
            if done is not None:
                reaped.append(done)
        return reaped

    # -- logs --------------------------------------------------------------------------------

    def _log_in(self, pipe: Pipeline, deployment_id: str, line: str) -> None:
        pipe.xadd(_key("deployment", deployment_id, "log"), {"line": line[: defaults.LOG_LINE_LIMIT]})

    def append_log(self, deployment_id: str, line: str) -> None:
        self.redis_call(
            self.redis.xadd,
            _key("deployment", deployment_id, "log"),
            {"line": line[: defaults.LOG_LINE_LIMIT]},
        )

    def read_log(
        self, deployment_id: str, after: str = "0-0", block_ms: int | None = None
    ) -> tuple[builtins.list[str], str]:
        """Log lines after cursor `after`, and the new cursor. `block_ms` waits for new lines."""
        key = _key("deployment", deployment_id, "log")
        if block_ms is None:
            entries = self.redis_call(self.redis.xrange, key, f"({after}" if after != "0-0" else "-", "+")
        else:
            result = self.redis_call(self.redis.xread, {key: after}, block=block_ms)
            entries = result[0][1] if result else []
        lines = [fields[b"line"].decode("utf-8", "replace") for _, fields in entries]
        cursor = entries[-1][0].decode() if entries else after
        return lines, cursor

    def follow_log(self, deployment_id: str, poll_ms: int = 1000) -> Iterator[str]:
        """Every log line, then new ones as they come, until the deployment is final."""
        cursor = "0-0"
        while True:
            lines, cursor = self.read_log(deployment_id, cursor)
            yield from lines
            dep = self.get(deployment_id)
            if dep.state.is_final:
                lines, cursor = self.read_log(deployment_id, cursor)
                yield from lines
                return
            lines, cursor = self.read_log(deployment_id, cursor, block_ms=poll_ms)
            yield from lines

    # -- reading -----------------------------------------------------------------------------

    def redis_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise QueueUnavailable(f"Redis is unreachable: {exc}") from None

    def _load(self, conn: redis.Redis | Pipeline, deployment_id: str) -> Deployment | None:
        raw = conn.hgetall(_key("deployment", deployment_id))
        return Deployment.from_fields(_decode(raw)) if raw else None

    def find(self, deployment_id: str) -> Deployment | None:
        return self.redis_call(self._load, self.redis, deployment_id)  # type: ignore[no-any-return]

    def get(self, deployment_id: str) -> Deployment:
        dep = self.find(deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {deployment_id!r}")
        return dep

    def list(self, app: str | None = None, state: str | None = None, limit: int = 50) -> builtins.list[Deployment]:
        """Newest first, optionally filtered by app and state."""
        out: builtins.list[Deployment] = []
        start, page = 0, max(limit, 50)
        newest = int(self.redis_call(self.redis.get, NEXT_ID_KEY) or 0)
        while len(out) < limit:
            if app:
                ids = [i.decode()
                       for i in self.redis_call(self.redis.lrange, app_index_key(app), start, start + page - 1)]
            else:
                ids = [str(i) for i in range(newest - start, max(0, newest - start - page), -1)]
            if not ids:
                break
            with self.redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(_key("deployment", i))
                raws = self.redis_call(pipe.execute)
            for raw in raws:
                if not raw:
                    continue
                dep = Deployment.from_fields(_decode(raw))
                if state is None or dep.state == state:
                    out.append(dep)
            start += page
        return out[:limit]

    def queued_id(self, app: str) -> str | None:
        raw = self.redis_call(self.redis.get, _key("app", app, "queued"))
        return raw.decode() if raw else None

    def running_ids(self) -> builtins.list[str]:
        return sorted((i.decode() for i in self.redis_call(self.redis.smembers, RUNNING_KEY)), key=int)

    def live(self, app: str) -> LiveRelease | None:
        raw = _decode(self.redis_call(self.redis.hgetall, _key("app", app, "live")))
        if not raw:
            return None
        return LiveRelease(app=app, sha=raw["sha"], deployment_id=raw["deployment_id"], since=float(raw["since"]))

    def previous_success(self, app: str, before_sha: str | None) -> Deployment | None:
        """The newest succeeded deployment of `app` whose sha differs from `before_sha`."""
        for dep in self.list(app=app, state=DeploymentState.SUCCEEDED, limit=defaults.KEEP_DEPLOYMENTS_PER_APP):
            if dep.sha != before_sha:
                return dep
        return None

    def ping(self) -> None:
        self.redis_call(self.redis.ping)


def app_lock_key(app: str) -> str:
    """The per-app deploy lock (held by the worker running a deployment of that app)."""
    return _key("app", app, "lock")

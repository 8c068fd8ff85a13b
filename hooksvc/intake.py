"""The webhook hot path: record deployments in one Lua script, then turn them into jobs and events.

A webhook's writes (dedupe, record, coalescing, intake entry) are one script: all or nothing in one
round trip, and no WATCH transaction retried over and over under concurrent pushes for one app.
The RQ job and the listeners' events follow from the intake entry in a dispatcher (a thread of
every worker), so the web answer never waits for them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from redis.client import Pipeline

from hooksvc import defaults, keys
from hooksvc.connection import call, direct_command
from hooksvc.deployments import WAITING_STATES, Deployment, DeploymentState, NewDeployment
from hooksvc.errors import HooksvcError
from hooksvc.jobqueue import drop_job

if TYPE_CHECKING:
    from hooksvc.store import DeploymentStore

log = logging.getLogger("hooksvc.intake")

#: Dedupe records live in one HASH per period of DEDUPE_TTL_SECONDS, which expires as a whole a period
#: after it ends, and a lookup reads the current and the previous period: an entry is kept between
#: one and two periods. A field in an existing hash costs Redis a fraction of a new key with its own
#: expiry, and two periods are two reads per webhook.
DEDUPE_PERIOD_SECONDS = defaults.DEDUPE_TTL_SECONDS

# ARGV: now, metric field suffix ("" counts nothing), number n of dedupe ids, the n ids; then per
#       deployment: app, sha, state (queued, or waiting-for-checks for a gated push), why it is
#       frozen ("" when not: Python reads the app's windows), its queued slot (`keys.queued_slot`:
#       the app's, or a preview's own) and the field/value pairs of its record, ending with an empty
#       field name. A preview's deployment is never held: locks and freeze windows are production's.
# Returns {"dup", first answer} or {"ok", {new ids}, {ids of the deployments they superseded},
# {the new ones' states}}. A deployment of a locked (`app_locks`) or frozen app starts `held`, with
# the reason as its `error` (a gated one waits for its checks once released); a new deployment
# supersedes the app's waiting one (queued, held or waiting for its checks).
# The dedupe hashes hold the first answer as "id app sha" per deployment, comma-separated; an
# intake entry is "new ids;superseded ids;now" (ids comma-separated). Plain strings, flat arguments
# and constant key names, no cjson, as few writes as the rules allow: every argument, redis.call and
# write (each is appended to the AOF) is paid for on every webhook, in Redis's one thread.
SUBMIT_SCRIPT = """
local WAITING = {@WAITING@}
local now, metric, nseen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local period = math.floor(tonumber(now) / @PERIOD@)
if nseen > 0 then
  for back = 0, 1 do
    for _, first in ipairs(redis.call('HMGET', '@SEEN@' .. (period - back), unpack(ARGV, 4, 3 + nseen))) do
      if first then
        if metric ~= '' then redis.call('HINCRBY', '@WEBHOOKS@', 'duplicate:' .. metric, 1) end
        return {'dup', first}
      end
    end
  end
end
local created, superseded, states, answer = {}, {}, {}, {}
local a = 4 + nseen
while a <= #ARGV do
  local app, sha, state, why, slot, from = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], a + 5
  a = from
  while ARGV[a] ~= '' do a = a + 2 end
  local id = tostring(redis.call('INCR', '@NEXT@'))
  if slot == '@OWN_SLOT@' then
    local lock = redis.call('HMGET', '@APP@' .. app .. ':locked', 'by', 'reason')
    if lock[1] then why = 'deploys to ' .. app .. ' are locked by ' .. lock[1] .. ': ' .. lock[2] end
  end
  if why ~= '' then state = 'held' end
  redis.call('HSET', '@DEPLOYMENT@' .. id, 'id', id, 'state', state, 'created_at', now,
             unpack(ARGV, from, a - 1))
  if why ~= '' then redis.call('HSET', '@DEPLOYMENT@' .. id, 'error', why) end
  a = a + 1
  redis.call('LPUSH', '@APP@' .. app .. ':index', id)
  local old = redis.call('SET', '@APP@' .. app .. ':' .. slot, id, 'GET')
  if old then
    local okey = '@DEPLOYMENT@' .. old
    if WAITING[redis.call('HGET', okey, 'state')] then
      local why = 'superseded by ' .. string.sub(sha, 1, 12) .. ' (deployment ' .. id .. ')'
      redis.call('HSET', okey, 'state', 'superseded', 'finished_at', now, 'error', why)
      superseded[#superseded + 1] = old
    end
  end
  created[#created + 1] = id
  states[#states + 1] = state
  answer[#answer + 1] = id .. ' ' .. app .. ' ' .. sha
end
if nseen > 0 then
  local first, seen, fields = table.concat(answer, ','), '@SEEN@' .. period, {}
  for i = 4, 3 + nseen do fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = first end
  local fresh = redis.call('EXISTS', seen) == 0
  redis.call('HSET', seen, unpack(fields))
  if fresh then redis.call('EXPIREAT', seen, (period + 2) * @PERIOD@) end
end
redis.call('RPUSH', '@INTAKE@', table.concat(created, ',') .. ';' .. table.concat(superseded, ',') .. ';' .. now)
if metric ~= '' then redis.call('HINCRBY', '@WEBHOOKS@', 'accepted:' .. metric, 1) end
return {'ok', created, superseded, states}
"""
# Key names come from `hooksvc.keys`, substituted into the text: constants cost the script nothing.
for _name, _value in (("@SEEN@", keys.SEEN_PREFIX), ("@DEPLOYMENT@", keys.DEPLOYMENT_PREFIX),
                      ("@APP@", keys.APP_PREFIX), ("@INTAKE@", keys.INTAKE), ("@WEBHOOKS@", keys.WEBHOOKS),
                      ("@NEXT@", keys.NEXT_ID), ("@PERIOD@", str(DEDUPE_PERIOD_SECONDS)),
                      ("@OWN_SLOT@", keys.queued_slot(None)),
                      ("@WAITING@", ", ".join(f"['{s}'] = true" for s in sorted(WAITING_STATES)))):
    SUBMIT_SCRIPT = SUBMIT_SCRIPT.replace(_name, _value)


@dataclass(frozen=True)
class SubmitResult:
    deployments: tuple[Deployment, ...]
    #: Set when the delivery had been seen before: the summaries answered the first time.
    duplicate_of: tuple[dict[str, str], ...] | None = None
    #: Ids of the queued deployments the new ones replaced.
    superseded: tuple[str, ...] = ()


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


class Intake:
    """Submit deployments (the webhook path and operators' requests) and dispatch what was submitted."""

    def __init__(self, store: DeploymentStore, dispatch_inline: bool = True) -> None:
        self.store = store
        self.redis = store.redis
        #: Dispatch right after each submit; the web app turns this off (see DeploymentStore).
        self.dispatch_inline = dispatch_inline
        self._submit_sha = hashlib.sha1(SUBMIT_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so

    def submit(
        self,
        requests: Sequence[NewDeployment],
        dedupe_keys: Sequence[str] = (),
        webhook_provider: str = "",
    ) -> SubmitResult:
        """Record deployments atomically, coalescing per app and deduplicating deliveries.

        `dedupe_keys` identify the delivery (its id, a hash of its signed body); when any of them
        was seen in the last `DEDUPE_TTL_SECONDS`, nothing is written and the first answer returns.
        The RQ job and the listeners' writes follow in `dispatch`, from the intake entry written
        here. `webhook_provider` counts the webhook's outcome (accepted or duplicate) in the script.
        """
        now = self.store.clock()
        args: list[object] = [repr(now), webhook_provider, len(dedupe_keys), *dedupe_keys]
        for r in requests:
            frozen = "" if r.override_freeze or r.preview is not None else self.store.frozen(r.app, now)
            args += (r.app, r.sha, str(r.state), frozen, keys.queued_slot(r.preview), *r.record_fields(), "")
        reply = call(self._run_submit_script, args)
        if reply[0] == b"dup":
            return SubmitResult(deployments=(), duplicate_of=first_answer(reply[1]))
        created = tuple(
            Deployment.create(i.decode(), r, now, DeploymentState(state.decode()))
            for i, r, state in zip(reply[1], requests, reply[3], strict=True)
        )
        # A held one's record names what holds it, which the script wrote: read those back.
        created = tuple(self.store.find(d.id) or d if d.state is DeploymentState.HELD else d for d in created)
        superseded = tuple(i.decode() for i in reply[2])
        if self.dispatch_inline:
            self.dispatch()
        return SubmitResult(deployments=created, superseded=superseded)

    def _run_submit_script(self, args: Sequence[object]) -> Any:
        # EVALSHA on a pooled connection directly: redis-py's Script wrapper and its per-command
        # layers cost as much again on this hot path. Loaded on first use and after a Redis restart.
        try:
            return direct_command(self.redis, "EVALSHA", self._submit_sha, 0, *args)
        except redis.exceptions.NoScriptError:
            self._submit_sha = self.redis.script_load(SUBMIT_SCRIPT)
            return direct_command(self.redis, "EVALSHA", self._submit_sha, 0, *args)

    # -- dispatching ---------------------------------------------------------------------------------

    def dispatch(self, block_seconds: float | None = None) -> int:
        """Turn intake entries into RQ jobs and listener events; returns how many entries were done.

        Each entry moves to a processing list first (LMOVE) and leaves it in the same transaction
        that writes its jobs and events, so a dispatcher that dies mid-way loses nothing:
        `recover` puts the entry back. Doing an entry twice is harmless: a job whose deployment is
        no longer queued ends at once.
        """
        done = 0
        while True:
            if block_seconds is not None and done == 0:
                raw = call(self.redis.blmove, keys.INTAKE, keys.INTAKE_PROCESSING, block_seconds, "LEFT", "RIGHT")
            else:
                raw = call(self.redis.lmove, keys.INTAKE, keys.INTAKE_PROCESSING, "LEFT", "RIGHT")
            if raw is None:
                return done
            self._dispatch_entry(raw)
            done += 1

    def _dispatch_entry(self, raw: bytes) -> None:
        entry = IntakeEntry.parse(raw)
        ids = [*entry.superseded, *entry.created]
        store, logs = self.store, self.store.logs

        def body(pipe: Pipeline) -> list[Deployment]:
            deps = {i: store.load(pipe, i) for i in ids}
            pipe.multi()
            for i in entry.superseded:
                old = deps[i]
                drop_job(store.queue, pipe, i)
                if old is not None and old.state is DeploymentState.SUPERSEDED:
                    logs.append_in(pipe, i, old.error)
                    store.notify(pipe, old)
            queued = []
            for i in entry.created:
                dep = deps[i]
                if dep is None:
                    continue
                logs.append_in(pipe, i, f"queued {dep.trigger} of {dep.sha or dep.ref} ({dep.ref or 'no ref'})")
                if dep.state is DeploymentState.WAITING_FOR_CHECKS:
                    logs.append_in(pipe, i, dep.error)
                elif dep.state is DeploymentState.HELD:
                    logs.append_in(pipe, i, f"held: {dep.error}")
                elif dep.state is DeploymentState.QUEUED:
                    store.enqueue_job(pipe, dep)
                if dep.state.is_waiting:
                    # A waiting state has no job yet: its status says what it waits for.
                    store.notify(pipe, dep)
                    queued.append(dep)
            pipe.lrem(keys.INTAKE_PROCESSING, 1, raw)
            return queued

        queued: list[Deployment] = store.transaction([keys.deployment(i) for i in ids], body)
        # The server log's line per accepted deployment is written here, not in the web process:
        # at hundreds of webhooks a second, a log line is a measurable share of the answer.
        for dep in queued:
            via = f", delivery {dep.delivery_id}" if dep.delivery_id else ""
            log.info("deployment %s of %s %s: %s of %s (%s)%s", dep.id, dep.app,
                     dep.error or "queued", dep.trigger, dep.sha[:12] or dep.ref, dep.ref or "no ref", via)
        if entry.superseded:
            log.info("deployment(s) %s superseded", ", ".join(entry.superseded))

    def recover(self, older_than: float = defaults.INTAKE_RECOVER_SECONDS) -> int:
        """Put back intake entries a dead dispatcher left in processing for longer than `older_than`."""
        recovered = 0
        for raw in call(self.redis.lrange, keys.INTAKE_PROCESSING, 0, -1):
            if time.time() - IntakeEntry.parse(raw).at < older_than:
                continue
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrem(keys.INTAKE_PROCESSING, 1, raw)
                pipe.rpush(keys.INTAKE, raw)
                removed, _ = call(pipe.execute)
            if not removed:
                # Another recoverer (or the slow dispatcher itself) got there first: undo our push.
                call(self.redis.lrem, keys.INTAKE, -1, raw)
                continue
            recovered += 1
        return recovered

    def dispatch_forever(self, stop: threading.Event) -> None:
        """Dispatch as soon as intake arrives, recovering dead dispatchers' entries now and then,
        until `stop` is set; Redis outages are waited out."""
        last_recovery = 0.0
        while not stop.is_set():
            try:
                self.dispatch(block_seconds=defaults.INTAKE_BLOCK_SECONDS)
                if time.monotonic() - last_recovery > defaults.INTAKE_RECOVER_SECONDS:
                    last_recovery = time.monotonic()
                    if self.recover():
                        log.warning("intake: put back entries of a dispatcher that died")
            except HooksvcError as exc:
                log.warning("intake: %s", exc)
                stop.wait(defaults.INTAKE_BLOCK_SECONDS)

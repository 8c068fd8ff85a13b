"""The outbox sender: delivers what `hooksvc.outbox` wrote — commit statuses to the git hosts, and
notifications.

Runs in a daemon thread of every `hooksvc worker` (the runtime starts it). Any number of senders
may run at once: each lane (one commit's statuses, or one notification) is served by one sender
at a time under a short Redis lease, head first, and its head leaves the list only
once delivered or given up. Nothing here can change a deployment's outcome; it only reads
deployments' snapshots and appends to their logs.

Retry policy, per lane head:
- 2xx: delivered. A transport error, a timeout, 5xx, 408, 409 (GitLab: "another update to this
  commit status is in progress"), 425 or 429: retried with exponential backoff and jitter, the
  head keeping its place so later statuses of that commit wait behind it.
- any other answer (3xx, 4xx): not retried; logged, counted, dropped.
- a pending status is dropped once it has failed for `REPORT_RETRY_SECONDS` while a newer status
  of its commit waits behind it (it would be overwritten at once anyway);
- a final status, or a pending one with nothing behind it, is retried for
  `FINAL_STATUS_RETRY_SECONDS`, so a host that is down for hours still ends with the right status;
- a notification is retried for `REPORT_RETRY_SECONDS`: after that it is news no longer.

Requests to a host with GitHub App credentials carry an installation token (`workers.host_auth`);
one answered 401 (the token expired or was revoked) is sent once more with a renewed token, and no
token to be had (GitHub unreachable, the App not installed) is retried like a transport error.
With App credentials each deployment is also a check run (`workers.check_runs`), following the
commit-status rules.

A deployment recorded on the git host (`workers.host_deployments`) follows the commit-status rules;
one of its events may take several requests (create, status, `inactive` of the replaced release),
each built once the one before it was delivered, so a retry never repeats a delivered step.

A preview's deployment (SPEC §13) is reported under a status context of its own (the app's plus
`/preview`), its success linking to the preview itself; it is recorded in the preview's environment
on the host, and shown in one pull request comment (`workers.preview_comments`), edited in place.
Its teardown marks that environment inactive or stopped and says so in the comment. The same rules.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from hooksvc import defaults, keys
from hooksvc.config import AppConfig, Config, HostConfig
from hooksvc.deployments import DeploymentState
from hooksvc.errors import RedisUnavailable
from hooksvc.logs import DeploymentLogs
from hooksvc.outbox import CHECK_RUN, HOST_DEPLOYMENT, PREVIEW_COMMENT, SLACK, STATUS, WEBHOOK, OutboxEvent
from hooksvc.preview_records import PreviewRecords
from hooksvc.previews import preview_url, template_fields
from hooksvc.redact import redact
from hooksvc.store import DeploymentStore
from workers import host_auth, http, notify
from workers.check_runs import CheckRunReport, CheckRuns, summary_text
from workers.host_auth import HostAuthError
from workers.host_deployments import HostDeployments
from workers.http import HttpRequest, PlannedRequest
from workers.locks import Lease
from workers.preview_comments import CommentView, PreviewComments
from workers.statuses import REPORTERS, StatusUpdate, describe_preview_state, describe_state, status_context

log = logging.getLogger("hooksvc.outbox")

#: A final status is what a commit keeps for good: keep trying through a day-long host outage.
FINAL_STATUS_RETRY_SECONDS = 24 * 3600.0
#: Idle senders look for new events this often: statuses show up within half a second, and one
#: ZRANGEBYSCORE per poll and process is negligible load for Redis.
POLL_SECONDS = 0.5
#: Lanes taken per pass: bounds one pass's Redis round trips; the rest wait for the next pass.
LANES_PER_PASS = 100
#: A lane lease outlives one HTTP request by this much, so a live sender never loses its lease
#: mid-request, and a dead sender's lane is picked up again within seconds.
LOCK_MARGIN_SECONDS = 10.0
#: Answers worth retrying besides 5xx: timeouts, conflicts of concurrent updates, rate limits.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
#: Characters of an answer body quoted in a log line (enough for a host's error message).
ANSWER_QUOTE_CHARS = 200
#: (sent, failed attempts, dropped) counters of each kind of event sent to the git host.
HOST_COUNTERS = {
    STATUS: (keys.STATUS_SENT, keys.STATUS_FAILURES, keys.STATUS_DROPPED),
    HOST_DEPLOYMENT: (keys.HOST_DEPLOYMENT_SENT, keys.HOST_DEPLOYMENT_FAILURES, keys.HOST_DEPLOYMENT_DROPPED),
    CHECK_RUN: (keys.CHECK_RUN_SENT, keys.CHECK_RUN_FAILURES, keys.CHECK_RUN_DROPPED),
    PREVIEW_COMMENT: (keys.PREVIEW_COMMENT_SENT, keys.PREVIEW_COMMENT_FAILURES, keys.PREVIEW_COMMENT_DROPPED),
}

# Removes the head only if it is still the event we delivered, and the lane from `due` once empty:
# atomic against a listener appending (its RPUSH + ZADD NX land either before or after this).
_ACK = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
redis.call('DEL', KEYS[3])
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
return 1
"""


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to."""

    ok: bool
    retryable: bool
    detail: str


@dataclass(frozen=True)
class OutboxRequest:
    """An event made concrete: the request, the metric label, and the words for the log."""

    #: None when no request could be made (see `unavailable`).
    request: HttpRequest | None
    label: str
    what: str
    sent_key: str
    failures_key: str
    dropped_key: str
    #: A step of a multi-step event: told of the answer once delivered (ValueError: the answer is
    #: unusable), after which the event is prepared again instead of leaving the lane.
    delivered: Callable[[http.HttpResponse], None] | None = None
    #: Told when the event is given up (True: the host refused it), to record what that means.
    dropped: Callable[[bool], None] | None = None
    #: Added to the log line of a refused request: what the operator may have to fix.
    hint: str = ""
    #: The GitHub App host and repository whose installation token the request carries: a 401 is
    #: then answered by renewing the token and sending the event once more.
    app_auth: tuple[HostConfig, str] | None = None
    #: Why no request could be made (no installation token to be had): retried like a transport error.
    unavailable: str = ""


def classify(status: int) -> Attempt:
    """2xx delivered; 5xx and `RETRYABLE_STATUSES` worth another try; anything else final."""
    if 200 <= status < 300:
        return Attempt(ok=True, retryable=False, detail=f"HTTP {status}")
    return Attempt(ok=False, retryable=status >= 500 or status in RETRYABLE_STATUSES, detail=f"HTTP {status}")


def backoff_seconds(attempts: int, rng: Callable[[], float]) -> float:
    """`REPORT_BACKOFF_SECONDS` doubled per failed attempt, capped, with half of it random (jitter),
    so senders that failed together do not all retry together."""
    step = min(defaults.REPORT_BACKOFF_SECONDS * 2.0 ** max(attempts - 1, 0), defaults.REPORT_BACKOFF_MAX_SECONDS)
    return step / 2 + rng() * step / 2


class OutboxSender:
    """Delivers due outbox events. `clock` is wall-clock time (epoch seconds): retry times are stored
    in Redis and compared by senders in other processes and on other machines."""

    def __init__(
        self,
        config: Config,
        connection: redis.Redis,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        http_timeout: float = defaults.REPORT_HTTP_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.redis = connection
        self.logs = DeploymentLogs(connection)
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.http_timeout = http_timeout
        self.lock_ms = int((http_timeout + LOCK_MARGIN_SECONDS) * 1000)
        self.secrets = config.secrets()
        self._ack = connection.register_script(_ACK)
        self.host_deployments = HostDeployments(connection)
        self.check_runs = CheckRuns(connection)
        self.preview_comments = PreviewComments(connection)

    # -- the loop ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Deliver whatever is due now, lane by lane; returns how many requests succeeded."""
        lanes = self.redis.zrangebyscore(keys.OUTBOX_DUE, "-inf", self.clock(), start=0, num=LANES_PER_PASS)
        delivered = 0
        for raw_lane in lanes:
            lane = raw_lane.decode() if isinstance(raw_lane, bytes) else str(raw_lane)
            lease = Lease(self.redis, keys.outbox_lock(lane), uuid.uuid4().hex, self.lock_ms)
            if not lease.acquire():
                continue  # another sender is on it
            try:
                delivered += self._drain(lane, lease)
            finally:
                lease.release()
        return delivered

    def run_forever(self, stop: threading.Event) -> None:
        """`run_once` until `stop` is set; Redis outages are waited out, never fatal."""
        outage = 0
        while not stop.is_set():
            delivered = 0
            try:
                delivered = self.run_once()
                outage = 0
            except (redis.RedisError, RedisUnavailable) as exc:
                outage += 1
                log.warning("outbox sender: Redis unavailable (%s); retrying", type(exc).__name__)
                self.sleep(backoff_seconds(outage, self.rng))
                continue
            except Exception:
                # A bug must not silence reporting for the life of the process: log it, go on.
                log.exception("outbox sender: unexpected error; continuing")
                self.sleep(POLL_SECONDS)
                continue
            if delivered == 0 and not stop.is_set():
                self.sleep(POLL_SECONDS)

    # -- one lane ----------------------------------------------------------------------------

    def _drain(self, lane: str, lease: Lease) -> int:
        """Deliver `lane`'s events in order until it is empty or its head must wait for a retry."""
        delivered = 0
        key = keys.outbox_lane(lane)
        while True:
            if not lease.extend():
                return delivered  # the lease ran out: someone else owns the lane now
            raw = self.redis.lindex(key, 0)
            if raw is None:
                self._ack(keys=[key, keys.OUTBOX_DUE, keys.outbox_retry(lane)], args=["", lane])
                return delivered
            try:
                event = OutboxEvent.from_json(raw)
            except (ValueError, KeyError, TypeError):
                log.error("outbox sender: dropping an undecodable event in lane %s", lane)
                self._ack(keys=[key, keys.OUTBOX_DUE, keys.outbox_retry(lane)], args=[raw, lane])
                continue
            delivery = self._prepare(event)
            if delivery is None:
                self._ack(keys=[key, keys.OUTBOX_DUE, keys.outbox_retry(lane)], args=[raw, lane])
                continue
            attempt, answer = self._attempt(delivery)
            if answer is not None and answer.status == 401 and delivery.app_auth is not None:
                # An installation token can lapse or be revoked while cached: renew it, send once more.
                host_auth.refused(*delivery.app_auth)
                self._log(event, f"{delivery.what}: HTTP 401 with the installation token; renewing it, sending again")
                delivery = self._prepare(event) or delivery
                attempt, answer = self._attempt(delivery)
            if attempt.ok and delivery.delivered is not None and answer is not None:
                try:
                    delivery.delivered(answer)
                except ValueError as exc:
                    self.redis.hincrby(delivery.failures_key, delivery.label, 1)
                    self._drop(lane, raw, event, delivery, f"{attempt.detail}: {exc}; not retried", rejected=True)
                    continue
                # The head stays: its next step (if any) is prepared on the next turn of the loop.
                self.redis.delete(keys.outbox_retry(lane))
                self.redis.hincrby(delivery.sent_key, delivery.label, 1)
                self._log(event, f"{delivery.what}: sent ({attempt.detail})")
                delivered += 1
                continue
            if attempt.ok:
                self._ack(keys=[key, keys.OUTBOX_DUE, keys.outbox_retry(lane)], args=[raw, lane])
                self.redis.hincrby(delivery.sent_key, delivery.label, 1)
                self._log(event, f"{delivery.what}: sent ({attempt.detail})")
                delivered += 1
                continue
            self.redis.hincrby(delivery.failures_key, delivery.label, 1)
            if not attempt.retryable:
                self._drop(lane, raw, event, delivery, f"{attempt.detail}; not retried", rejected=True)
                continue
            if not self._schedule_retry(lane, raw, event, delivery, attempt):
                continue
            return delivered

    def _schedule_retry(self, lane: str, raw: bytes, event: OutboxEvent, delivery: OutboxRequest,
                        attempt: Attempt) -> bool:
        """Put the head back for a later try; False (and dropped) when it ran out of retry time."""
        now = self.clock()
        state = {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.outbox_retry(lane)).items()}
        if state.get("event") == event.id:
            attempts, first = int(state["attempts"]) + 1, float(state["first_failure"])
        else:
            attempts, first = 1, now
        waiting_behind = int(self.redis.llen(keys.outbox_lane(lane))) > 1
        bound, why = self._retry_bound(event, waiting_behind)
        if now - first >= bound:
            self._drop(lane, raw, event, delivery, f"{attempt.detail}; gave up after {now - first:.0f}s ({why})")
            return False
        delay = backoff_seconds(attempts, self.rng)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.outbox_retry(lane),
                      mapping={"event": event.id, "attempts": attempts, "first_failure": first})
            pipe.zadd(keys.OUTBOX_DUE, {lane: now + delay})
            pipe.execute()
        self._log(event, f"{delivery.what}: attempt {attempts} failed ({attempt.detail}); retrying in {delay:.1f}s")
        return True

    def _retry_bound(self, event: OutboxEvent, waiting_behind: bool) -> tuple[float, str]:
        if event.kind not in (STATUS, HOST_DEPLOYMENT, CHECK_RUN, PREVIEW_COMMENT):
            return defaults.REPORT_RETRY_SECONDS, "notifications are retried that long"
        if not event.state.is_final and waiting_behind:
            if event.kind == HOST_DEPLOYMENT:
                return defaults.REPORT_RETRY_SECONDS, "a newer state of this app's deployments is waiting"
            return defaults.REPORT_RETRY_SECONDS, "a newer status of this commit is waiting"
        return FINAL_STATUS_RETRY_SECONDS, "retry time exhausted"

    def _drop(self, lane: str, raw: bytes, event: OutboxEvent, delivery: OutboxRequest, why: str,
              *, rejected: bool = False) -> None:
        self._ack(keys=[keys.outbox_lane(lane), keys.OUTBOX_DUE, keys.outbox_retry(lane)], args=[raw, lane])
        self.redis.hincrby(delivery.dropped_key, delivery.label, 1)
        if delivery.dropped is not None:
            delivery.dropped(rejected)
        hint = f"; {delivery.hint}" if rejected and delivery.hint else ""
        self._log(event, f"{delivery.what}: dropped: {why}{hint}", warning=True)

    # -- one event ---------------------------------------------------------------------------

    def _prepare(self, event: OutboxEvent) -> OutboxRequest | None:
        """The request for `event`, or None when there is nothing to send (no target configured)."""
        app = self.config.apps.get(event.app)
        if app is None:
            log.info("outbox sender: app %r is no longer configured; event dropped", event.app)
            return None
        try:
            return self._prepare_for(event, app)
        except HostAuthError as exc:
            host = self.config.hosts[app.host]
            sent, failures, dropped = HOST_COUNTERS.get(event.kind, HOST_COUNTERS[STATUS])
            return OutboxRequest(None, host.kind, f"{event.kind} on {host.kind} {app.repo}@{event.sha[:12]}", sent,
                                 failures, dropped, unavailable=f"no installation token: {exc}")

    def _prepare_for(self, event: OutboxEvent, app: AppConfig) -> OutboxRequest | None:
        url = self._deployment_url(event.deployment_id)
        try:
            if event.kind == STATUS:
                configured = self.config.hosts.get(app.host)
                reporter = REPORTERS.get(configured.kind) if configured is not None else None
                if configured is None or not configured.has_credentials or reporter is None:
                    return None  # no token (the operator's choice) or no status API: no statuses
                host = host_auth.with_token(configured, app.repo)
                description = self._describe(event)
                if event.preview is not None and event.state is DeploymentState.SUCCEEDED:
                    url = self._preview_url(app, event.preview) or url  # "Details" opens the preview
                update = StatusUpdate(repo=app.repo, sha=event.sha, state=event.state,
                                      context=status_context(app.status_context, event.preview),
                                      description=description, target_url=url, ref=event.ref,
                                      checks_failed=event.checks_failed)
                request = reporter.build(host, update)
                state = str((request.json or {}).get("state"))
                what = f"commit status {state} ({event.state}) on {host.kind} {app.repo}@{event.sha[:12]}"
                return OutboxRequest(request, host.kind, what, keys.STATUS_SENT, keys.STATUS_FAILURES,
                                     keys.STATUS_DROPPED, app_auth=_app_auth(configured, app))
            if event.kind == HOST_DEPLOYMENT:
                return self._prepare_host_deployment(event, app)
            if event.kind == CHECK_RUN:
                return self._prepare_check_run(event, app, url)
            if event.kind == PREVIEW_COMMENT:
                return self._prepare_preview_comment(event, app, url)
            if event.kind == WEBHOOK and app.notify.webhook_url is not None:
                request = notify.build_webhook_request(app.notify, event, url)
                return OutboxRequest(request, WEBHOOK, "notification webhook", keys.NOTIFY_SENT,
                                     keys.NOTIFY_FAILURES, keys.NOTIFY_DROPPED)
            if event.kind == SLACK and app.notify.slack_url is not None:
                request = notify.build_slack_request(app.notify, event, url)
                return OutboxRequest(request, SLACK, "Slack notification", keys.NOTIFY_SENT,
                                     keys.NOTIFY_FAILURES, keys.NOTIFY_DROPPED)
        except ValueError as exc:
            self._log(event, f"{event.kind}: cannot build the request: {exc}", warning=True)
        return None

    def _prepare_host_deployment(self, event: OutboxEvent, app: AppConfig) -> OutboxRequest | None:
        configured = self.config.hosts.get(app.host)
        if configured is None or not configured.has_credentials or self._refused(event):
            return None  # a refused fork's preview never runs: no environment is made for it
        host = host_auth.with_token(configured, app.repo)
        description = self._describe(event, checks=False)
        preview_address = self._preview_url(app, event.preview) if event.preview is not None else None
        planned = self.host_deployments.prepare(event, app, host, description, self._deployment_url, preview_address)
        return _stepped(planned, configured, app, HOST_DEPLOYMENT) if planned is not None else None

    def _prepare_check_run(self, event: OutboxEvent, app: AppConfig, url: str) -> OutboxRequest | None:
        """The check run's next request: only hosts with GitHub App credentials (GitHub lets only an
        App write check runs)."""
        configured = self.config.hosts.get(app.host)
        if configured is None or configured.app is None:
            return None
        outcome = redact(describe_state(event.deployment_id, event.state, event.error, event.checks_failed),
                         self.secrets)
        deployment = DeploymentStore.load(self.redis, event.deployment_id)
        report = CheckRunReport(
            repo=app.repo, sha=event.sha, name=status_context(app.status_context, event.preview), state=event.state,
            deployment_id=event.deployment_id, title=outcome.splitlines()[0] if outcome else str(event.state),
            summary=summary_text(app, event, deployment, outcome) + (f"\n\n[Deployment page]({url})" if url else ""),
            details_url=url, checks_failed=event.checks_failed,
        )
        step = self.check_runs.prepare(host_auth.with_token(configured, app.repo), report, event)
        if step is None:
            return None
        return OutboxRequest(step.request, configured.kind, step.what, keys.CHECK_RUN_SENT, keys.CHECK_RUN_FAILURES,
                             keys.CHECK_RUN_DROPPED, delivered=step.delivered,
                             dropped=lambda _rejected: self.check_runs.dropped(event),
                             hint="if the App may not write checks, give it the Checks: read and write permission",
                             app_auth=_app_auth(configured, app))

    def _prepare_preview_comment(self, event: OutboxEvent, app: AppConfig, url: str) -> OutboxRequest | None:
        """The preview comment's next request: find it, create it, or edit it."""
        configured = self.config.hosts.get(app.host)
        if configured is None or not configured.has_credentials or event.preview is None:
            return None
        reason = redact(event.error, self.secrets) if event.error else ""
        view = CommentView(app=app.name, number=event.preview, url=self._preview_url(app, event.preview) or "",
                           sha=event.sha, state=event.state, reason=reason, removed=event.removed, page_url=url,
                           deployment_id=event.deployment_id,
                           refused=self._refused(event) and event.state is DeploymentState.FAILED)
        host = host_auth.with_token(configured, app.repo)
        planned = self.preview_comments.prepare(host, app.repo, view, event)
        return _stepped(planned, configured, app, PREVIEW_COMMENT) if planned is not None else None

    def _describe(self, event: OutboxEvent, *, checks: bool = True) -> str:
        """The status sentence of `event` (a preview's names its pull request), redacted."""
        checks_failed = event.checks_failed and checks
        if event.preview is not None:
            text = describe_preview_state(event.preview, event.state, event.error, checks_failed,
                                          refused=self._refused(event) and event.state is DeploymentState.FAILED)
        else:
            text = describe_state(event.deployment_id, event.state, event.error, checks_failed)
        return redact(text, self.secrets)

    def _refused(self, event: OutboxEvent) -> bool:
        """A fork's preview its app does not build (its status and comment say why, nothing else)."""
        app = self.config.apps.get(event.app)
        previews = app.previews if app is not None else None
        return event.fork and (previews is None or not previews.allow_forks)

    def _preview_url(self, app: AppConfig, number: int) -> str | None:
        """Where pull request `number`'s preview of `app` is reached: as its record says (the worker
        filled in its port), else from the template when it names no port; None when not known."""
        record = PreviewRecords(self.redis).get(app.name, number)
        if record is not None and record.url:
            return record.url
        previews = app.previews
        if previews is None or "port" in template_fields(previews.url):
            return None
        return preview_url(previews, number, None)

    def _attempt(self, delivery: OutboxRequest) -> tuple[Attempt, http.HttpResponse | None]:
        if delivery.request is None:
            return Attempt(ok=False, retryable=True, detail=delivery.unavailable), None
        try:
            answer = http.send(delivery.request, timeout=self.http_timeout)
        except http.HttpTransportError as exc:
            return Attempt(ok=False, retryable=True, detail=str(exc)), None
        attempt = classify(answer.status)
        if attempt.ok or not answer.body:
            return attempt, answer
        return Attempt(attempt.ok, attempt.retryable, f"{attempt.detail}: {answer.text(ANSWER_QUOTE_CHARS)}"), answer

    def _deployment_url(self, deployment_id: str) -> str:
        base = self.config.server.public_url
        return f"{base}/deployments/{deployment_id}" if base else ""

    def _log(self, event: OutboxEvent, line: str, *, warning: bool = False) -> None:
        """To the deployment's log and the process log, redacted (of installation tokens too)."""
        clean = redact(line, [*self.secrets, *host_auth.issued_tokens()])
        self.logs.append(event.deployment_id, f"report: {clean}")
        log.log(logging.WARNING if warning else logging.INFO, "deployment %s: %s", event.deployment_id, clean)



def _app_auth(host: HostConfig, app: AppConfig) -> tuple[HostConfig, str] | None:
    """(host, repository) when requests for `app` carry a GitHub App installation token."""
    return (host, app.repo) if host.app is not None else None


def _stepped(planned: PlannedRequest, host: HostConfig, app: AppConfig, kind: str) -> OutboxRequest:
    """`planned` made an `OutboxRequest`, counted under `kind`'s counters."""
    sent, failures, dropped = HOST_COUNTERS[kind]
    return OutboxRequest(planned.request, host.kind, planned.what, sent, failures, dropped,
                         delivered=planned.delivered, dropped=planned.dropped, hint=planned.hint,
                         app_auth=_app_auth(host, app))

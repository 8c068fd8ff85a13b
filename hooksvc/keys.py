"""Every Redis key hooksvc writes, named in one place.

Each entity owns a prefix (as rq's `Queue.key` does): a deployment's record and log stream, an
app's pointers, the intake, the outbox and the counters. The submit script builds some names in
Lua from the same prefixes, so the script and Python can never disagree on a key.
RQ's own keys (`rq:queue:…`, `rq:job:…`) are RQ's business and are not listed here.
"""

from __future__ import annotations

PREFIX = "hooksvc"

# -- deployments ----------------------------------------------------------------------------------

#: `DEPLOYMENT_PREFIX + id` is a deployment's record (a HASH, see `Deployment.to_fields`).
DEPLOYMENT_PREFIX = f"{PREFIX}:deployment:"
#: The last deployment id handed out. Ids are dense and only grow, so counting down from it lists
#: every deployment newest first without an index written on each webhook.
NEXT_ID = f"{PREFIX}:deployment:next"
#: The SET of ids of running deployments (the reaper's work list).
RUNNING = f"{PREFIX}:running"


def deployment(deployment_id: str) -> str:
    """A deployment's record (HASH)."""
    return DEPLOYMENT_PREFIX + deployment_id


def deployment_log(deployment_id: str) -> str:
    """A deployment's log (STREAM of `line` entries)."""
    return f"{DEPLOYMENT_PREFIX}{deployment_id}:log"


def deployment_log_size(deployment_id: str) -> str:
    """What a deployment's log holds, for its cap (HASH: written, marker, tail, cut_lines, cut_bytes; see
    `hooksvc.logs`)."""
    return f"{DEPLOYMENT_PREFIX}{deployment_id}:log:size"


# -- apps -------------------------------------------------------------------------------------------

#: `APP_PREFIX + name + ":<what>"` are an app's pointers, below.
APP_PREFIX = f"{PREFIX}:app:"


def app_index(app: str) -> str:
    """One app's deployment ids, newest first (a LIST: ids only grow, so pushing keeps the order)."""
    return f"{APP_PREFIX}{app}:index"


def queued_slot(preview: int | None) -> str:
    """The name of a queued slot below the app's prefix: the app's own, or pull request N's preview's."""
    return "queued" if preview is None else f"pr-{preview}:queued"


def app_queued(app: str, preview: int | None = None) -> str:
    """The id of the app's queued deployment, if any (STRING): what a newer push supersedes. A preview
    (SPEC §13) has a slot of its own, so pushes to one PR coalesce without touching production's."""
    return f"{APP_PREFIX}{app}:{queued_slot(preview)}"


def app_live(app: str) -> str:
    """The app's live release (HASH: sha, deployment_id, since)."""
    return f"{APP_PREFIX}{app}:live"


def app_disk(app: str) -> str:
    """Disk the app used on the worker that deployed it last (HASH: checkouts, images, measured_at)."""
    return f"{APP_PREFIX}{app}:disk"


def app_services(app: str) -> str:
    """What the app's services run since its last deployment that went live (STRING: JSON)."""
    return f"{APP_PREFIX}{app}:services"


def app_rollout_record(app: str) -> str:
    """The live containers of the app's last rollout, shared by all workers (STRING: JSON, as in the file)."""
    return f"{APP_PREFIX}{app}:rollout"


def app_locked(app: str) -> str:
    """An operator's lock on the app (HASH: by, reason, at; see `hooksvc.app_locks`): while it exists,
    the app's deployments are held. Not to be confused with `app_lock`, the deploy lease."""
    return f"{APP_PREFIX}{app}:locked"


def preview_queued_pattern(app: str) -> str:
    """A SCAN pattern of the queued slots of the app's previews (app names hold no glob characters)."""
    return f"{APP_PREFIX}{app}:pr-*:queued"


def app_lock(app: str, preview: int | None = None) -> str:
    """The per-app deploy lock, holding the id of the deployment (or poller) that holds it. A preview
    has a lock of its own: it never waits for, or blocks, production or another PR's preview."""
    return f"{APP_PREFIX}{app}:lock" if preview is None else f"{APP_PREFIX}{app}:pr-{preview}:lock"


def app_previews(app: str) -> str:
    """The app's live previews (HASH: PR number -> JSON `hooksvc.preview_records.PreviewRecord`)."""
    return f"{APP_PREFIX}{app}:previews"


#: The host ports previews were given, across apps (HASH: port -> "app pr-N"), so two previews never
#: publish on one port.
PREVIEW_PORTS = f"{PREFIX}:preview-ports"


# -- CI checks of gated pushes (`require_checks`) ---------------------------------------------------

CHECKS_PREFIX = f"{PREFIX}:checks:"
#: The lease of the worker whose gate thread decides the waiting deployments (STRING, expiring).
CHECKS_GATE = f"{PREFIX}:checks-gate"


def commit_checks(app: str, sha: str) -> str:
    """The check reports known on one commit of an app, by check name (HASH: name -> JSON `CheckReport`),
    written by check webhooks and by the worker's reads of the host's check API."""
    return f"{CHECKS_PREFIX}{app}:{sha}"


def commit_checks_refresh(app: str, sha: str) -> str:
    """Set when a webhook said the commit's checks changed without naming one (a GitHub check suite):
    the worker reads the host's check API for it at once (STRING, expiring)."""
    return f"{CHECKS_PREFIX}{app}:{sha}:refresh"


# -- webhook intake ---------------------------------------------------------------------------------

#: Submitted deployments whose RQ jobs and listener events are still to be written (a LIST of
#: "new ids;superseded ids;time" entries, see `hooksvc.intake.IntakeEntry`).
INTAKE = f"{PREFIX}:intake"
#: Intake entries a dispatcher is working on.
INTAKE_PROCESSING = f"{PREFIX}:intake:processing"
#: `SEEN_PREFIX + period` is the HASH of deliveries first seen in one dedupe period: id -> first answer.
SEEN_PREFIX = f"{PREFIX}:seen:"


def seen(period: int) -> str:
    return f"{SEEN_PREFIX}{period}"


# -- outbox (commit statuses and notifications) ----------------------------------------------------

OUTBOX_PREFIX = f"{PREFIX}:outbox"
#: A ZSET lane -> when its head may next be tried (epoch seconds; 0 = now).
OUTBOX_DUE = f"{OUTBOX_PREFIX}:due"


def outbox_lane(lane: str) -> str:
    """A lane's events, oldest first (LIST of JSON `OutboxEvent`s)."""
    return f"{OUTBOX_PREFIX}:lane:{lane}"


def outbox_lock(lane: str) -> str:
    """A short lease: one sender per lane at a time."""
    return f"{OUTBOX_PREFIX}:lock:{lane}"


def outbox_retry(lane: str) -> str:
    """A HASH describing the lane's failing head: event id, first failure time, attempts."""
    return f"{OUTBOX_PREFIX}:retry:{lane}"


def host_deployment(deployment_id: str) -> str:
    """What the git host knows of a deployment (HASH: the host's id for it, progress; see
    `workers.host_deployments`)."""
    return f"{OUTBOX_PREFIX}:host_deployment:{deployment_id}"


def check_run(deployment_id: str) -> str:
    """The GitHub check run reporting a deployment (HASH: the host's check-run id, the last event it
    got; see `workers.check_runs`)."""
    return f"{OUTBOX_PREFIX}:check_run:{deployment_id}"


def host_deployment_active(app: str, preview: int | None = None) -> str:
    """The app's deployment the git host shows active (HASH: deployment_id, host_id): the one the
    next successful release marks `inactive`. A preview's environment has its own (`preview`: the
    pull request), which also holds the host's last deployment there (`latest`) and, on GitLab, the
    environment's id (see `workers.host_deployments`)."""
    suffix = f":pr-{preview}" if preview is not None else ""
    return f"{OUTBOX_PREFIX}:host_deployment_active:{app}{suffix}"


def preview_comment(app: str, number: int) -> str:
    """The pull request comment that shows the app's preview (HASH: the host's comment id, or how far
    the search for it got; see `workers.preview_comments`)."""
    return f"{OUTBOX_PREFIX}:preview_comment:{app}:{number}"


# -- counters for /metrics (each a HASH of label -> count) ------------------------------------------

METRICS_PREFIX = f"{PREFIX}:metrics"
#: `<outcome>:<provider>` -> webhook requests.
WEBHOOKS = f"{METRICS_PREFIX}:webhooks"
#: `<state>:<app>` -> deployments that ended in that state.
DEPLOYMENTS = f"{METRICS_PREFIX}:deployments"
#: `count:<app>`, `sum:<app>`, `bucket:<le>:<app>` (non-cumulative) of deployment durations.
DEPLOYMENT_DURATION = f"{METRICS_PREFIX}:deployment_duration"
#: By host kind (github, gitea, forgejo, gitlab): statuses delivered, failed attempts, given up.
STATUS_SENT = f"{METRICS_PREFIX}:status_sent"
STATUS_FAILURES = f"{METRICS_PREFIX}:status_failures"
STATUS_DROPPED = f"{METRICS_PREFIX}:status_dropped"
#: By target (webhook, slack): notifications delivered, failed attempts, given up.
NOTIFY_SENT = f"{METRICS_PREFIX}:notify_sent"
NOTIFY_FAILURES = f"{METRICS_PREFIX}:notify_failures"
NOTIFY_DROPPED = f"{METRICS_PREFIX}:notify_dropped"
#: By host kind (github, gitlab): deployment API requests delivered, failed attempts, given up.
HOST_DEPLOYMENT_SENT = f"{METRICS_PREFIX}:host_deployment_sent"
HOST_DEPLOYMENT_FAILURES = f"{METRICS_PREFIX}:host_deployment_failures"
HOST_DEPLOYMENT_DROPPED = f"{METRICS_PREFIX}:host_deployment_dropped"
#: By host kind (github): check-run requests (create, update) delivered, failed attempts, given up.
CHECK_RUN_SENT = f"{METRICS_PREFIX}:check_run_sent"
CHECK_RUN_FAILURES = f"{METRICS_PREFIX}:check_run_failures"
CHECK_RUN_DROPPED = f"{METRICS_PREFIX}:check_run_dropped"
#: By host kind (github, gitea, forgejo, gitlab): preview comment requests (find, create, edit)
#: delivered, failed attempts, given up.
PREVIEW_COMMENT_SENT = f"{METRICS_PREFIX}:preview_comment_sent"
PREVIEW_COMMENT_FAILURES = f"{METRICS_PREFIX}:preview_comment_failures"
PREVIEW_COMMENT_DROPPED = f"{METRICS_PREFIX}:preview_comment_dropped"


# -- operator sessions and the login throttle -------------------------------------------------------

#: `SESSION_PREFIX + sha256(session id)` is a logged-in browser's session (HASH, see
#: `hooksvc.sessions.OperatorSession`); it expires with the session. The key holds a hash of the id
#: the cookie carries, so reading Redis hands out no live session.
SESSION_PREFIX = f"{PREFIX}:session:"
#: `LOGIN_FAILURES_PREFIX + "address:" + address` and `+ "token:" + sha256(token)`: failed token
#: checks in the current window (STRING counter, expiring with the window).
LOGIN_FAILURES_PREFIX = f"{PREFIX}:login:failures:"


def session(id_digest: str) -> str:
    """A session record, by the sha256 of the id in its cookie (HASH)."""
    return SESSION_PREFIX + id_digest


def login_failures_address(address: str) -> str:
    """Failed token checks from one client address (STRING counter with the window's expiry)."""
    return f"{LOGIN_FAILURES_PREFIX}address:{address}"


def login_failures_token(token_digest: str) -> str:
    """Failed checks of one presented token, by its sha256 (STRING counter with the window's expiry)."""
    return f"{LOGIN_FAILURES_PREFIX}token:{token_digest}"


# -- the audit trail --------------------------------------------------------------------------------

#: Who did what, newest last (a STREAM capped at `defaults.AUDIT_KEEP_ENTRIES`; see `hooksvc.audit`).
AUDIT = f"{PREFIX}:audit"


def oidc_login(state_digest: str) -> str:
    """A single sign-on under way, by the sha256 of its `state` (HASH: nonce, code_verifier, next), read
    once when the provider sends the browser back, and expiring after `defaults.OIDC_LOGIN_SECONDS`."""
    return f"{PREFIX}:oidc:login:{state_digest}"


def oidc_starts(address: str) -> str:
    """Single sign-ons started from one client address in the current window (STRING counter expiring
    with it): what bounds the records an anonymous client can make Redis keep."""
    return f"{PREFIX}:oidc:starts:{address}"

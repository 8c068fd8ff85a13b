"""Every default of hooksvc, named, each with the reason for its value."""

from hooksvc.strategies import strategy_names

#: Loopback by default: exposing the server is a decision the operator makes explicitly.
LISTEN = "127.0.0.1:8080"
#: Git hosts send at most 25 MB (GitHub); pushes are far smaller, and 5 MiB bounds memory per request.
MAX_BODY_BYTES = 5 * 1024 * 1024
#: A git host's form-encoded webhook body holds one field, `payload`: a body with more fields than this
#: is refused before it is parsed (thousands of empty fields would cost seconds of CPU, unsigned).
WEBHOOK_FORM_MAX_FIELDS = 8
#: Environment variable holding the comma-separated API bearer tokens.
API_TOKENS_ENV = "HOOKSVC_API_TOKENS"
#: The shortest API token accepted, and the webhook secret length below which check-config warns: 16
#: random characters are out of reach of guessing, online or offline (a captured signed delivery).
#: Webhook secrets are only warned about: git hosts let users choose short ones, and refusing them
#: would stop a working setup's deployments at the next restart.
MIN_SECRET_CHARACTERS = 16
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Environment variable that overrides `[redis] url`, as is customary for Redis clients.
REDIS_URL_ENV = "REDIS_URL"
#: Environment variable naming the config file when `--config` is not given.
CONFIG_ENV = "HOOKSVC_CONFIG"
STATE_DIR = "/var/lib/hooksvc"
#: Web worker processes and threads of `hooksvc serve`: threads let a followed log stream without
#: blocking webhooks; two processes keep one slow request from stalling the others.
WEB_PROCESSES = 2
WEB_THREADS = 8
#: Deploy workers started by `hooksvc run`: two, so two apps deploy in parallel.
RUN_WORKERS = 2
#: Releases kept on disk for rollback; older checkouts are pruned.
KEEP_RELEASES = 5
#: A compose build of a real project can take many minutes; half an hour bounds a hung build.
JOB_TIMEOUT_SECONDS = 30 * 60
#: Long enough for a slow-booting service's healthcheck start period plus a few intervals.
HEALTH_TIMEOUT_SECONDS = 120.0
#: A service without a healthcheck counts as healthy once it has kept running this long.
START_GRACE_SECONDS = 5.0
#: After the drain command, wait this long for a health-aware proxy to stop routing to the old container.
DRAIN_SECONDS = 3.0
#: Grace period for stopping old containers when the service sets no stop_grace_period (Docker's default).
STOP_GRACE_SECONDS = 10.0
#: The longest a release may make a rollout wait while it retires one container (its
#: `hooksvc.drain_seconds` label, its `stop_grace_period`): the app's deploy lock is held meanwhile,
#: and the job timeout must still cover the build and the health gate.
MAX_RETIRE_WAIT_SECONDS = 600.0
#: The strategy an app without `strategy` gets: the first of the registry (hooksvc/strategies.py).
STRATEGY = strategy_names()[0]
#: Every strategy an app may name, from the registry.
STRATEGIES = strategy_names()
#: A plain git server (a bare repository's post-receive hook): no API, no commit statuses.
PLAIN_GIT_KIND = "git"

#: GitHub redelivers a delivery with the same id for up to 3 days; keep a margin over that.
DEDUPE_TTL_SECONDS = 4 * 24 * 3600
#: Deployments kept per app (`[worker] keep_deployments`): records, logs and index entries of older
#: finished ones are deleted, so Redis stays flat under a steady stream of pushes; 200 is months of
#: history for a busy app, and as far back as a rollback looks for the previous success.
KEEP_DEPLOYMENTS = 200
#: Redis socket timeouts: a webhook must be answered well within the git host's 5-10 s timeout.
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
#: An intake entry in processing this long belongs to a dispatcher that died (dispatching takes ms).
INTAKE_RECOVER_SECONDS = 60.0
#: A dispatcher waits this long for intake before it looks after other duties; a stopping worker
#: waits up to this long for it (an entry that arrives ends the wait at once).
INTAKE_BLOCK_SECONDS = 0.25
#: RQ queue that carries deployment jobs.
QUEUE_NAME = "hooksvc-deploy"

#: The per-app deploy lock expires this long after the last renewal, so a dead worker frees it soon.
LOCK_TTL_SECONDS = 15.0
#: Renew the lock well before it expires: three renewals fit in one TTL.
LOCK_RENEW_SECONDS = 5.0
#: How often a waiting job re-checks the lock and whether it was superseded meanwhile.
LOCK_POLL_SECONDS = 0.2
#: How often a running deployment's job looks for an operator's cancel request: noticed within a second.
CANCEL_POLL_SECONDS = 0.25
#: A deployment waits this long for a Redis that went away (a restart takes seconds) before the
#: write it needs (its sha, its log, its final state) fails; its containers are not touched meanwhile.
REDIS_OUTAGE_WAIT_SECONDS = 300.0
#: `deploy --wait` / `rollback --wait` give up this long after the job timeout: the deployment has
#: had all the time a worker would give it, plus time to be picked up and to finish its writes.
WAIT_MARGIN_SECONDS = 30.0
#: While nothing runs a waited-for deployment, `--wait` says so this often.
NO_WORKER_WARNING_SECONDS = 10.0
#: A deploy worker writes its heartbeat this often, idle or busy (RQ's own: every few minutes idle).
WORKER_HEARTBEAT_SECONDS = 5
#: A worker whose last heartbeat is older than this (three missed) is gone: `hooksvc status` stops
#: listing it. One that stops leaves the list at once; this bounds how long a killed one stays.
WORKER_GONE_SECONDS = 15.0
#: How often the reaper looks for deployments whose worker died.
REAPER_INTERVAL_SECONDS = 5.0
#: A queued deployment without a live job this long after it was queued is stranded: well past the
#: intake dispatcher's recovery of a dead dispatcher's entries (INTAKE_RECOVER_SECONDS).
STRANDED_QUEUED_SECONDS = 120.0

#: Commit-status descriptions: GitHub rejects more than 140 characters, GitLab more than 255.
GITHUB_DESCRIPTION_LIMIT = 140
GITLAB_DESCRIPTION_LIMIT = 255
#: Appended to an app's `status_context` for its previews' commit statuses (`hooksvc/shop/preview`):
#: a pull request's head may be the very commit production runs, and a host keeps one status per
#: commit and context.
PREVIEW_STATUS_CONTEXT_SUFFIX = "/preview"
#: The `[hosts.*]` keys of GitHub App authentication, and the host kinds that take them.
GITHUB_APP_KEYS = frozenset({"app_id", "private_key_file", "installation_id"})
GITHUB_APP_KINDS = frozenset({"github"})
#: A GitHub App's JWT: dated this far back against clock drift (GitHub's advice: 60 s), and valid
#: this long from now (GitHub refuses more than 10 minutes).
GITHUB_APP_JWT_BACKDATE_SECONDS = 60
GITHUB_APP_JWT_LIFETIME_SECONDS = 9 * 60
#: An installation token (valid one hour) is renewed this long before it expires, so no request
#: ever goes out with a token about to lapse in flight.
INSTALLATION_TOKEN_RENEW_SECONDS = 5 * 60

#: Notifications, and pending statuses that a newer status waits behind, are retried this long
#: (final statuses longer: see workers/outbox_sender.py).
REPORT_RETRY_SECONDS = 600.0
#: First backoff step of status and notification retries; doubled each time, with jitter.
REPORT_BACKOFF_SECONDS = 1.0
#: Upper bound of one backoff step.
REPORT_BACKOFF_MAX_SECONDS = 60.0
#: One HTTP request to a git host or notification target.
REPORT_HTTP_TIMEOUT_SECONDS = 10.0

#: Lines of a failing container's log quoted in the deployment's error.
FAILED_CONTAINER_LOG_LINES = 20
#: Log lines are cut to this many characters so one runaway line cannot fill Redis.
LOG_LINE_LIMIT = 4000
#: A deployment's log keeps at most this many bytes of lines: a chatty build wrote 9.1 MB (81,555 lines) in
#: 30 s, and 200 such logs per app would fill Redis. Of it, the last LOG_TAIL_BYTES are the log's end (the
#: error a failed build ends with); what came between the first part and the end is cut, and says so.
LOG_CAP_BYTES = 5 * 1024 * 1024
#: The end of a log over LOG_CAP_BYTES that is kept: thousands of lines, far more than a build's error.
LOG_TAIL_BYTES = 1024 * 1024
#: A value from outside (repository name, request path) is cut to this many characters in the server
#: log: enough to recognise it, too little for one request to flood the log.
LOG_VALUE_LIMIT = 200
#: The shortest base64 or hex fragment of a secret that redaction masks: shorter ones (from secrets of
#: a few characters) would mask ordinary words, and carry too little of the secret to matter.
REDACT_MIN_ENCODED = 8

# -- config limits (checked when the config is read) ------------------------------------------------

#: The longest duration a config key may give: no timeout or interval sensibly exceeds a week, and
#: every wait, alarm and int() of a bounded value stays in range (signal.alarm, thread waits).
MAX_DURATION_SECONDS = 7 * 24 * 3600.0

#: `hooksvc serve` (waitress in gunicorn workers, see hooksvc/runtime/web.py). A request, headers
#: and body, must arrive whole within this long of its connection opening or of the previous
#: answer: git hosts give up on a delivery after 5-10 s, so no legitimate sender needs longer, and
#: a slow or stalled client (or an idle keep-alive connection) frees its connection this soon.
WEB_READ_TIMEOUT_SECONDS = 10.0
#: A stopping web process lets its requests in flight answer within this long: a webhook answers in
#: milliseconds, while a long-polled log (5 s) or a followed one is cut, and its client asks again.
WEB_STOP_GRACE_SECONDS = 5
#: Open connections per web process (gunicorn's own default); more wait in the listen backlog.
#: Stalled clients cost a socket each, not a thread, and are closed after the read timeout.
WEB_CONNECTIONS = 1000
#: Request line plus headers: a git host sends about 2 KiB, a browser rarely 16; this bounds what
#: a connection can make a web process hold before its request is complete.
WEB_MAX_HEADER_BYTES = 64 * 1024
#: A request body over this waits for the application in a temporary file instead of memory: push
#: payloads are mostly smaller, and memory held by half-sent bodies stays at most connections × this.
WEB_BODY_MEMORY_BYTES = 64 * 1024
#: Bytes of request bodies one web process lets wait in temporary files at once (bodies over
#: WEB_BODY_MEMORY_BYTES, counted at their declared size until whole): six 5 MiB pushes arriving at
#: the same moment fit, and forty half-sent bodies no longer spool 200 MiB to disk. Beyond it: 503.
WEB_SPOOL_BYTES = 32 * 1024 * 1024
#: Such bodies one client address may have arriving at once per web process.
WEB_SPOOLING_PER_CLIENT = 2
#: `Retry-After` of a body refused for want of spool room: about a read timeout, when room is back.
WEB_SPOOL_RETRY_AFTER_SECONDS = 10

# -- long requests, logins and sessions (hooksvc/web) ----------------------------------------------

#: Followed logs (`log?follow=1`) and log long-polls (`log.json?wait=1`) may hold at most this share of
#: a web process's request threads at once: each holds a thread while it lasts, and the rest must stay
#: free for webhooks and /healthz however many readers come. Beyond it they get a 503 with Retry-After.
STREAM_THREAD_SHARE = 0.5
#: Long requests one client address may hold at once per web process, unless it presents an operator's
#: credentials: one anonymous reader (`public_read`) cannot take every slot. Beyond it: 429.
STREAMS_PER_CLIENT = 2
#: A followed log ends after this long even while its deployment goes on (a last line says so): a
#: stream whose reader went away is noticed only when a line is written, and must not hold its thread
#: for a deployment that waits hours in the queue.
STREAM_MAX_SECONDS = 300.0
#: `Retry-After` of a refused long request: about one long-poll, when a slot is likely free again.
STREAM_RETRY_AFTER_SECONDS = 5
#: Failed token checks (login form, basic auth, bearer) from one client address within the window
#: before that address gets 429 for the rest of it: a person mistypes a few times, a guesser thousands.
LOGIN_FAILURES_PER_ADDRESS = 10
#: Failed checks of one presented token, from any address, within the window: the same guess tried
#: from many addresses stops as soon.
LOGIN_FAILURES_PER_TOKEN = 10
#: The window counts from the first failure; after it the counts start again.
LOGIN_FAILURE_WINDOW_SECONDS = 600
#: A login lasts a working day; logging out, or a changed API token, ends it earlier.
SESSION_LIFETIME_SECONDS = 12 * 3600
#: Audit entries kept (all apps together), oldest dropped first: like `keep_deployments`, Redis stays
#: flat; 10 000 entries are months of a team's deploys, logins and refusals.
AUDIT_KEEP_ENTRIES = 10_000
#: An audit entry's free-text fields (user agent, reason) are cut to this many characters: enough to
#: read, never a way to fill Redis.
AUDIT_TEXT_MAX_CHARS = 300
#: Entries `GET /api/audit`, `/audit` and `hooksvc audit` list when no limit is asked for.
AUDIT_LIST_LIMIT = 50
#: The most entries one audit listing returns.
AUDIT_LIST_MAX = 1000
#: Environment variables naming the operator the command line acts as, and holding its token (`--as`).
CLI_OPERATOR_ENV = "HOOKSVC_OPERATOR"
CLI_TOKEN_ENV = "HOOKSVC_TOKEN"  # noqa: S105 - the name of a variable, not a token
#: What hooksvc asks an OpenID Connect provider for: the ID token, a name, an address, the groups.
OIDC_SCOPES = "openid profile email groups"
#: The ID token claim that names an operator who logs in through single sign-on (else `sub`).
OIDC_NAME_CLAIM = "preferred_username"
#: The claim listing the groups `group:NAME` in `[server.oidc] roles` matches (Gitea, GitLab, Keycloak).
OIDC_GROUPS_CLAIM = "groups"
#: A single sign-on must come back within this long after it started (its state and nonce expire).
OIDC_LOGIN_SECONDS = 600
#: Requests to the provider (discovery, keys, token) give up after this long: a login, not a deploy, waits.
OIDC_HTTP_TIMEOUT_SECONDS = 10.0
#: The provider's discovery document and keys are fetched again after this long (keys rotate).
OIDC_METADATA_SECONDS = 3600
#: Leeway for the ID token's exp/iat against this machine's clock.
OIDC_CLOCK_LEEWAY_SECONDS = 60
#: Single sign-ons one address may start within `OIDC_LOGIN_SECONDS` (then 429): a person needs a few;
#: the cap bounds what an anonymous client can make Redis hold.
OIDC_STARTS_PER_ADDRESS = 20

# -- CI-gated deploys (`require_checks`) -------------------------------------------------------------

#: A gated push waits at most this long (from its arrival) for its checks: CI runs of an hour are
#: long already, and a push that waited longer is rarely still the one a team wants live.
CHECKS_TIMEOUT_SECONDS = 60 * 60.0
#: `require_checks = "all"` on a commit that has no check at all deploys after this long: CI
#: systems report a first pending status within seconds of the push, so a minute of silence means
#: there is no CI for that commit (and waiting out the timeout would only delay the deploy).
CHECKS_NONE_GRACE_SECONDS = 60.0
#: How often the gate thread looks at the waiting deployments and the check reports webhooks recorded.
CHECKS_TICK_SECONDS = 1.0
#: The first read of the host's check API, counted from the push: a webhook usually says more sooner,
#: and this bounds how late a lost one is noticed.
CHECKS_POLL_FIRST_SECONDS = 15.0
#: The host's check API is read again after twice the previous gap, never more rarely than this:
#: bounded rate per waiting deployment, and a lost webhook still noticed within minutes.
CHECKS_POLL_MAX_SECONDS = 5 * 60.0
#: `require_checks = "all"` deploys only on a read of the host's check API at most this old.
CHECKS_FRESH_READ_SECONDS = 5.0
#: One worker's gate acts at a time; another takes over within this long after it died.
CHECKS_GATE_LEASE_SECONDS = 10.0
#: The largest answer read from a host's check API: a hundred GitHub check runs with their apps'
#: details are a few hundred KiB.
CHECKS_API_MAX_BYTES = 4 * 1024 * 1024
#: Check runs, statuses or pipelines read per commit (one page: the hosts' largest page size).
CHECKS_API_PAGE_SIZE = 100
#: Check reports recorded per app and commit live this long after their last update (longer than any
#: `checks_timeout` a team would set, so nothing a waiting deployment needs expires under it).
CHECKS_RECORD_TTL_SECONDS = 24 * 60 * 60

# -- locks and freeze windows ------------------------------------------------------------------------

#: The zone an app's `freeze` windows are read in unless it names its `timezone`.
TIMEZONE = "UTC"
#: How often a worker looks for held deployments whose freeze window ended (an unlock releases at once).
HOLD_CHECK_SECONDS = 5.0
#: The longest lock reason kept: a sentence for a commit status, not a document.
LOCK_REASON_MAX_CHARS = 200

# -- plans ------------------------------------------------------------------------------------------

#: RQ queue of plan jobs (what a deploy would change), which every worker takes before deployments.
PLAN_QUEUE_NAME = "hooksvc-plan"
#: How long `GET /api/apps/<app>/plan` and `hooksvc plan` wait for a worker's answer before a 504.
PLAN_WAIT_SECONDS = 30.0
#: A plan job is killed after this long (a fetch and `compose config`; it never builds).
PLAN_JOB_TIMEOUT_SECONDS = 60
#: A plan waits this long for the app's deploy lock (to fetch and check out), then says the app is busy.
PLAN_LOCK_WAIT_SECONDS = 3.0
#: Live previews per app: each is a whole copy of the app (its containers, volumes and images), so a
#: shared server holds a handful, not one per open pull request of a busy repository.
PREVIEWS_MAX = 5
#: A preview no one pushed to for three days is torn down: a pull request left open over a weekend
#: keeps its preview, a forgotten one gives its resources back.
PREVIEW_TTL_SECONDS = 72 * 3600.0
#: How often workers look for previews past their `ttl`: a ttl is hours, a minute late is on time.
PREVIEW_SWEEP_SECONDS = 60.0
